# Types of pyzram/workload/replay.py when it is compiled (Cython pure-Python mode): the
# process's loop runs inside every measured window of a run, once per access.
cimport cython
from pyzram.mm.vmscan cimport AddressSpace

@cython.locals(n=Py_ssize_t, fill_every=Py_ssize_t, pattern_every=Py_ssize_t, step=Py_ssize_t,
               vpn=long, s=long, lo=Py_ssize_t, chunk=Py_ssize_t, i=Py_ssize_t,
               vpns=list, srcs=list)
cpdef Py_ssize_t replay(AddressSpace mm, object page_of, object acc, object src,
                        long[::1] exp, object sample, object after_step=*) except -1
