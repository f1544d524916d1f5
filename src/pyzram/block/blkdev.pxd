# Types of pyzram/block/blkdev.py when it is compiled (Cython pure-Python mode).
cimport cython

@cython.final
cdef class Gendisk:
    cdef public str disk_name
    cdef public object fops
    cdef public object private_data
    cdef public object capacity_fn
    cdef public long features
    cdef public long logical_block_size
    cdef public long _openers
    cdef public object bd_holder
    cdef public object bio_stats
    cdef object __weakref__


@cython.final
cdef class BlockDevice:
    cdef public Gendisk disk
    cdef public object holder
    cdef object __weakref__
