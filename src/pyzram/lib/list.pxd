# Types of pyzram/lib/list.py when it is compiled (Cython pure-Python mode).
cimport cython

cdef class List

cdef class ListHead:
    cdef public ListHead lru_prev, lru_next
    cdef public List lru_list

cdef class List:
    cdef public ListHead oldest, newest
    cdef public long nr

cpdef void INIT_LIST_HEAD(ListHead node)
@cython.locals(newest=ListHead)
cpdef void list_add_tail(List head, ListHead node)
@cython.locals(prev=ListHead, nxt=ListHead)
cpdef void list_del(List head, ListHead node)
cpdef void list_move_tail(List head, ListHead node)
