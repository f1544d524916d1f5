"""zsmalloc: the compressed-object allocator behind zram (model of mm/zsmalloc.c).

Design, as in the kernel's header comment
-----------------------------------------
Objects are allocated from *size classes* 16 bytes apart (32, 48, ... 4096).
Every request grows by ``ZS_HANDLE_SIZE`` (8) before the class is chosen,
because a normal object stores its handle in its first word.  A class
carves objects out of *zspages*: chains of 1..``ZS_MAX_PAGES_PER_ZSPAGE``
order-0 pages, the chain length chosen to waste the least tail space;
objects may straddle the page boundaries inside a zspage.  Neighbouring
classes with the same (pages, objects) shape are *merged*: the smaller
indices point at the larger class.  The first class (from the top) whose
zspage holds more than one object in more than one page fixes
``huge_class_size``; everything above is the one-object-per-page "huge"
class, which zram uses to store incompressible pages raw.

Each class files its zspages in twelve *fullness groups* by in-use ratio
(0, 1..10 for 1-99% in 10% steps, 11 for full).  Allocation takes the head
zspage of the fullest non-full group; a zspage moves to the head of another
group only when its group changes; an emptied zspage is freed at once.
The fullness lists are the kernel's doubly linked lists (``zspage->list``,
``list_add`` at the head).  Inside a zspage the free objects form the
kernel's singly linked free list: each free object's first word holds the
index of the next (``link_free``, written for every object by
``init_zspage``), ``zspage->freeobj`` is its head, ``obj_malloc`` pops it and
``obj_free`` pushes on it.  ``zs_compact`` migrates
objects from the emptiest zspages into the fullest ones, class by class.

All of this decides ``pages_allocated`` (zram's ``mem_used_total``), so it is
modelled exactly; the objects' bytes are really stored, at their real
offsets, so every page reads back.

Storage: every zspage's pages are contiguous bytes of one *arena*, an
anonymous mapping reserved when the pool is created (untouched pages cost
nothing), and the handle table maps a handle to the arena offset of its
object's data, so a codec reads or writes an object in place.  There is one
allocation path, ``zs_malloc``, and one free path, ``zs_free``, as in the
kernel; a failed allocation returns a negative errno (``IS_ERR_VALUE``).

What is simplified (see docs/architecture.md): handles are small integers
indexing our handle table rather than slab addresses; a zspage's pages are
contiguous (the kernel chains separate pages and copies objects that
straddle two of them); an object being read holds the pool's
``migrate_lock`` (read) rather than its zspage's lock; page migration and
deferred zspage freeing are not modelled; the memory shrinker (which
compacts behind the user's back) is not run.
"""

from __future__ import annotations

import errno
import mmap
import threading
from typing import Any

import cython
import numpy as np

from pyzram.lib.atomic import atomic_begin, atomic_end
from pyzram.lib.rwsem import RWSemaphore
from pyzram.lib.spinlock import spin_lock, spin_unlock, spinlock_t
from pyzram.lib.string import memcpy

PAGE_SIZE = 4096
PAGE_SHIFT = 12
ZS_HANDLE_SIZE = 8
ZS_ALIGN = 8
ZS_MIN_ALLOC_SIZE = 32
ZS_MAX_ALLOC_SIZE = PAGE_SIZE
CLASS_BITS = 8
ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> CLASS_BITS
ZS_SIZE_CLASSES = -(-(ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA) + 1
OBJ_ALLOCATED_TAG = 1
OBJ_TAG_BITS = 1

ZS_INUSE_RATIO_0 = 0
ZS_INUSE_RATIO_10 = 1
ZS_INUSE_RATIO_99 = 10
ZS_INUSE_RATIO_100 = 11
NR_FULLNESS_GROUPS = 12

#: Groups find_get_zspage searches, fullest first: ZS_INUSE_RATIO_99 .. ZS_INUSE_RATIO_0.
_NONFULL_GROUPS = (1 << ZS_INUSE_RATIO_100) - 1
#: ``_FULLEST[mask]``: the highest group set in a mask of non-full groups.
_FULLEST = tuple(
    max((g for g in range(ZS_INUSE_RATIO_100) if m >> g & 1), default=-1)
    for m in range(_NONFULL_GROUPS + 1)
)
# C-typed copies for the compiled form (zsmalloc.pxd).
_HDR = ZS_HANDLE_SIZE
_TAG = OBJ_ALLOCATED_TAG
_TAG_BITS = OBJ_TAG_BITS
_PG_SHIFT = PAGE_SHIFT
_PG_SIZE = PAGE_SIZE
_MAX_ALLOC = ZS_MAX_ALLOC_SIZE
_EMPTY = ZS_INUSE_RATIO_0

#: MAP_NORESERVE (linux/mman.h; not exported by Python's mmap module).
_MAP_NORESERVE = 0x4000
#: MADV_POPULATE_WRITE (linux/mman.h, Linux 5.14; Python 3.11's mmap has no name for it).
_MADV_POPULATE_WRITE = 23
#: The arena's used part is made present this many bytes at a time, one system
#: call for 64 pages instead of a page fault each: the kernel's zspages come
#: from its free lists, so a host fault per new page is a cost it does not pay.
_POPULATE_CHUNK = 64 * PAGE_SIZE

#: ``link->next`` of a zspage's last object: ``-1UL << OBJ_TAG_BITS``.
_LAST_LINK = ((1 << 64) - 1) ^ ((1 << OBJ_TAG_BITS) - 1)
#: ``zspage->freeobj`` is an ``unsigned int``.
_FREEOBJ_MASK = 0xFFFFFFFF

CHAIN_SIZE_MIN = 4
CHAIN_SIZE_MAX = 16


def IS_ERR_VALUE(handle: int) -> bool:
    """``IS_ERR_VALUE``: a :meth:`ZsPool.zs_malloc` result that is an errno, not a handle."""
    return handle < 0


def calculate_zspage_chain_size(class_size: int, max_pages: int) -> int:
    """``calculate_zspage_chain_size``: pages per zspage with the least tail waste.

    Powers of two fit a single page exactly; otherwise the first chain length
    in 1..max_pages with the smallest ``(n * PAGE_SIZE) % size`` wins.
    """
    if class_size & (class_size - 1) == 0:
        return 1
    best, min_waste = 1, None
    for n in range(1, max_pages + 1):
        waste = (n * PAGE_SIZE) % class_size
        if min_waste is None or waste < min_waste:
            min_waste, best = waste, n
    return best


@cython.cclass
@cython.cclass
class SizeClass:
    """``struct size_class``: one physical class and its fullness lists.

    ``fullness_list[g]`` is the head zspage of group g's list (``None``
    when empty); the zspages are linked through their ``prev``/``next``, as
    through ``zspage->list``.  ``nonempty`` has bit g set while list g is
    not empty: ``find_get_zspage`` reads the fullest non-full group off it
    instead of testing the lists one by one.  ``fg_of[n]`` is
    ``get_fullness_group`` of n objects in use, precomputed.
    """

    def __init__(self, index: int, size: int, pages: int, objs: int, huge: bool) -> None:
        self.index = index
        self.size = size
        self.pages_per_zspage = pages
        self.objs_per_zspage = objs
        self.huge = huge
        self.fullness_list = [None] * NR_FULLNESS_GROUPS
        self.nonempty = 0
        self.fg_of = tuple(_fullness_group(objs, n) for n in range(objs + 1))
        self.objs_allocated = 0  # ZS_OBJS_ALLOCATED
        self.objs_inuse = 0  # ZS_OBJS_INUSE
        self.lock = spinlock_t()  # class->lock

    def zspages(self, fg: int) -> list[Zspage]:
        """``list_for_each_entry`` over group ``fg``'s list, head first."""
        out = []
        zspage = self.fullness_list[fg]
        while zspage is not None:
            out.append(zspage)
            zspage = zspage.next
        return out


@cython.cclass
class Zspage:
    """``struct zspage``: ``pages_per_zspage`` pages holding ``objs_per_zspage`` slots.

    The pages are ``pages_per_zspage * 4096`` contiguous bytes of the pool's
    arena from ``base``.  As in the kernel, an allocated object's first word
    holds its handle, tagged ``OBJ_ALLOCATED_TAG``, and a free object's the
    index of the next free one (``link_free``), untagged; ``freeobj`` is the
    first free object.  A huge zspage's one object has no header, and its
    handle is kept here (``huge_handle``, the kernel's ``page->index``).
    ``prev``/``next`` link it into its class's fullness list.
    """

    def __init__(self, zid: int, cls: SizeClass, base: int) -> None:
        _zspage_init(self, zid, cls, base)


def _zspage_init(zspage: Zspage, zid: int, cls: SizeClass, base: int) -> None:
    """The fields of a new zspage (``alloc_zspage`` makes it without a call
    through the type, as ``folio_alloc`` makes a folio)."""
    zspage.id = zid
    zspage.cls = cls
    zspage.inuse = 0
    zspage.fullness = _EMPTY  # ZS_INUSE_RATIO_0
    zspage.freeobj = 0
    zspage.huge_handle = 0
    zspage.base = base
    zspage.prev = None
    zspage.next = None


def _fullness_group(objs: int, inuse: int) -> int:
    if inuse == 0:
        return ZS_INUSE_RATIO_0
    if inuse == objs:
        return ZS_INUSE_RATIO_100
    return (100 * inuse // objs) // 10 + 1


def get_fullness_group(cls: SizeClass, inuse: int) -> int:
    """``get_fullness_group``: 0 empty, 11 full, else ``100*inuse/objs // 10 + 1``."""
    return _fullness_group(cls.objs_per_zspage, inuse)


def insert_zspage(cls: SizeClass, zspage: Zspage, fg: int) -> None:
    """``insert_zspage``: ``list_add`` at the head of fullness list ``fg``."""
    head = cls.fullness_list[fg]
    zspage.prev = None
    zspage.next = head
    if head is not None:
        head.prev = zspage
    cls.fullness_list[fg] = zspage
    cls.nonempty |= 1 << fg
    zspage.fullness = fg


def remove_zspage(cls: SizeClass, zspage: Zspage) -> None:
    """``remove_zspage``: ``list_del_init`` from its fullness list."""
    fg = zspage.fullness
    prev = zspage.prev
    nxt = zspage.next
    if prev is None:
        cls.fullness_list[fg] = nxt
        if nxt is None:
            cls.nonempty &= ~(1 << fg)
    else:
        prev.next = nxt
    if nxt is not None:
        nxt.prev = prev
    zspage.prev = None
    zspage.next = None


@cython.locals(fg=cython.int, newfg=cython.int)
def fix_fullness_group(cls: SizeClass, zspage: Zspage) -> int:
    """``fix_fullness_group``: move the zspage to the list its in-use count
    belongs to (at that list's head); returns its group."""
    newfg = cls.fg_of[zspage.inuse]
    fg = zspage.fullness
    if newfg != fg:
        remove_zspage(cls, zspage)
        insert_zspage(cls, zspage, newfg)
    return newfg


#: Arenas of destroyed pools, kept for the next pools (at most this many).
_SPARE_ARENAS_MAX = 4
#: Bytes of spare arenas kept present (their pages written, mapped and dirty);
#: a spare arena whose used part does not fit is handed back with MADV_FREE.
_SPARE_PRESENT_MAX = 256 << 20
#: (mapping, bytes its pool used: below that its pages may still hold old bytes,
#: and whether those pages were kept present).
_spare_arenas: list[tuple[mmap.mmap, int, bool]] = []
_spare_lock = threading.Lock()


def _take_arena(size: int) -> tuple[mmap.mmap, int]:
    """A reserved mapping of at least ``size`` bytes, a spare one or else a new
    one, and how far from its start its pages may hold old bytes (0: all zero).
    The last one given back is taken first: its pages are the likeliest to be
    still resident."""
    with _spare_lock:
        for i in range(len(_spare_arenas) - 1, -1, -1):
            arena, used, _present = _spare_arenas[i]
            if len(arena) >= size:
                del _spare_arenas[i]
                return arena, used
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
    return mmap.mmap(-1, size, flags=flags), 0


def _give_back_arena(arena: mmap.mmap, used: int) -> None:
    """A destroyed pool's mapping becomes a spare for the next pool.

    Its used pages stay present while the spares kept present hold at most
    :data:`_SPARE_PRESENT_MAX` bytes, as the kernel's freed pages stay in its
    direct map: a pool that takes it writes to them at memory speed.  Pages
    handed back to the host with ``MADV_FREE`` cost the next pool's first
    write to each a dirty-bit update by the CPU (about 0.3 µs a page here),
    and with ``MADV_DONTNEED`` a page fault; beyond the bound the memory goes
    back that way all the same, so that spares never hold much."""
    with _spare_lock:
        present = sum(u for _, u, kept in _spare_arenas if kept)
        keep = len(_spare_arenas) < _SPARE_ARENAS_MAX
        if keep and present + used <= _SPARE_PRESENT_MAX:
            _spare_arenas.append((arena, used, True))
            return
    try:
        arena.madvise(mmap.MADV_FREE, 0, used)
    except (OSError, AttributeError, ValueError):
        arena.madvise(mmap.MADV_DONTNEED, 0, used)
    with _spare_lock:
        if len(_spare_arenas) < _SPARE_ARENAS_MAX:
            _spare_arenas.append((arena, used, False))
            return
    arena.close()


@cython.cclass
class ZsPool:
    """``struct zs_pool``: the size classes, the zspages and the handle table.

    ``chain_size`` is ``CONFIG_ZSMALLOC_CHAIN_SIZE`` (4..16, default 8).
    ``max_bytes`` bounds the arena (virtual memory, reserved but untouched
    until used): zram passes twice its disksize, far above what its slots
    can hold.  ``handles_hint`` sizes the handle table (it grows if needed).
    """

    def __init__(
        self,
        name: str = "zram",
        chain_size: int = 8,
        *,
        max_bytes: int = 1 << 30,
        handles_hint: int = 1 << 10,
    ) -> None:
        if not CHAIN_SIZE_MIN <= chain_size <= CHAIN_SIZE_MAX:
            raise ValueError(
                f"ZSMALLOC_CHAIN_SIZE must be in {CHAIN_SIZE_MIN}..{CHAIN_SIZE_MAX}, "
                f"not {chain_size}"
            )
        self.name = name
        self.chain_size = chain_size
        self.pages_allocated = 0
        self.pages_compacted = 0  # zs_pool_stats.pages_compacted
        self._stat_lock = spinlock_t()  # the page allocator's
        self._compaction_in_progress = threading.Lock()
        #: ``pool->migrate_lock``: handle lookups (read) against object moves (write).
        self._migrate_lock = RWSemaphore()
        self.size_class: list[SizeClass] = [None] * ZS_SIZE_CLASSES  # type: ignore[list-item]
        self.huge_class_size = 0
        self._create_classes()
        #: ``class_of_len[n]``: the physical class of an n-byte object (0 < n <= 4096).
        self.class_of_len: list[SizeClass] = [self.size_class[0]] + [
            self.lookup_class(n) for n in range(1, ZS_MAX_ALLOC_SIZE + 1)
        ]
        # The arena: every zspage's pages, contiguous per zspage, in one anonymous
        # mapping reserved up front (MAP_NORESERVE: untouched pages cost nothing), so a
        # batch of objects is one buffer plus offsets for one codec call.
        self._arena_size = (max(-(-max_bytes // PAGE_SIZE), CHAIN_SIZE_MAX) + 1) * PAGE_SIZE
        #: How far earlier pools of a recycled arena used it (given back at destroy).
        self._arena, self._dirty_top = _take_arena(self._arena_size)
        # (No MADV_HUGEPAGE: with THP defrag "madvise" each 2 MiB fault compacts
        # memory first, ~15 us per 4 KiB page on this VM against ~3 for a plain fault.)
        #: The arena as a writable memoryview (codec calls take it as their source).
        self.arena = memoryview(self._arena)
        #: The arena as 64-bit words (object headers) and as a numpy view of them.
        self._words = self.arena.cast("Q")
        #: The arena as bytes, typed when compiled: object copies (the memory
        #: ``zs_obj_read_begin``'s offsets index, as ``arena`` is).
        self.mem = self.arena
        self._arena_top = PAGE_SIZE  # arena offset 0 stays unused: 0 means "no object"
        #: How far the arena has been made present (``_populate``).
        self._populated = self._dirty_top  # (a recycled arena: present below that)
        self._free_extents: list[list[int]] = [[] for _ in range(CHAIN_SIZE_MAX + 1)]
        #: ``page->zspage``: the zspage owning each arena page (grows with the
        #: arena's used part, so metadata stays proportional to the pool).
        self._page_zspage: list[Zspage | None] = [None]
        # The handle table: handle -> arena offset of the object's data; a free
        # handle's entry is the next free one, negated (0: none after it), so the
        # free handles form a list through the table, as a slab cache's free
        # objects link through themselves.  0 is never a handle.
        self._obj_addr = np.zeros(max(handles_hint, 16), dtype=np.int64)
        self._addr = memoryview(self._obj_addr)  # scalar access as Python ints
        self._next_handle = 1
        self._free_handle = 0  # the free handle freed last (0: none)
        self._nr_zspages = 0
        self._next_zspage_id = 1

    # -- construction ------------------------------------------------------

    def _create_classes(self) -> None:
        """``zs_create_pool``: build classes from the top, merging equal shapes."""
        prev: SizeClass | None = None
        for i in range(ZS_SIZE_CLASSES - 1, -1, -1):
            size = min(ZS_MIN_ALLOC_SIZE + i * ZS_SIZE_CLASS_DELTA, ZS_MAX_ALLOC_SIZE)
            pages = calculate_zspage_chain_size(size, self.chain_size)
            objs = pages * PAGE_SIZE // size
            if pages != 1 and objs != 1 and not self.huge_class_size:
                # Requests grow by ZS_HANDLE_SIZE before the lookup, hence the -7.
                self.huge_class_size = size - (ZS_HANDLE_SIZE - 1)
            if prev is not None and prev.pages_per_zspage == pages and prev.objs_per_zspage == objs:
                self.size_class[i] = prev  # can_merge()
                continue
            prev = SizeClass(i, size, pages, objs, pages == 1 and objs == 1)
            self.size_class[i] = prev

    @staticmethod
    def class_index(size: int) -> int:
        """``get_size_class_index`` of a request already grown by the handle size."""
        if size <= ZS_MIN_ALLOC_SIZE:
            return 0
        return min(-(-(size - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA), ZS_SIZE_CLASSES - 1)

    def lookup_class(self, size: int) -> SizeClass:
        """``lookup_size_class``: the physical class serving a ``size``-byte object."""
        return self.size_class[self.class_index(size + ZS_HANDLE_SIZE)]

    def zs_lookup_class_index(self, size: int) -> int:
        """``zs_lookup_class_index``: the index of the class at
        ``get_size_class_index(size)`` for the size *as given*.

        Unlike ``zs_malloc`` it does not first grow the request by
        ``ZS_HANDLE_SIZE``: sizes from ``huge_class_size`` up to the largest
        normal class's size (3625-3632 bytes with 4 KiB pages and a chain of
        8) look like that normal class here, though ``zs_malloc`` stores them
        in the huge class (``recompress_slot`` compares classes with it).
        """
        return self.size_class[self.class_index(size)].index

    @property
    def classes(self) -> list[SizeClass]:
        """The physical (unmerged) classes, smallest first."""
        seen: list[SizeClass] = []
        for c in self.size_class:
            if not seen or seen[-1] is not c:
                seen.append(c)
        return seen

    def zs_destroy_pool(self) -> None:
        """``zs_destroy_pool``: give the arena's pages back.

        The pages are handed to the kernel with ``MADV_FREE`` (reclaimed
        under memory pressure, otherwise reused without a new fault) and the
        mapping is kept for the next pool of this process, as freed zspage
        pages go back to the kernel's page allocator for the next user.
        The pool must not be used afterwards.
        """
        arena, self._arena = self._arena, None
        if arena is None:
            return
        self._words = None
        self.mem = None
        try:
            self.arena.release()  # any later use of this pool fails loudly
        except BufferError:  # a view of the arena is still alive: do not recycle it
            return
        # Pages an earlier pool of this arena used may still hold its bytes too.
        _give_back_arena(arena, max(self._arena_top, self._dirty_top))

    # -- handles -----------------------------------------------------------

    def cache_alloc_handle(self) -> int:
        """``cache_alloc_handle`` (``kmem_cache_alloc`` of the handle cache): a free
        slot of the handle table (0 never is one), taken in one atomic step, as
        the slab's per-CPU fast path takes an object with one ``cmpxchg``.

        A full table grows (doubles) under ``migrate_lock`` held for write, so
        no lookup runs while it is replaced, and is copied and replaced in one
        atomic step, so no handle is taken or freed in the middle.
        """
        while True:
            atomic_begin()
            handle = self._free_handle
            if handle:  # the one freed last; its entry names the next
                self._free_handle = -self._addr[handle]
                self._addr[handle] = 0
            elif self._next_handle < len(self._addr):
                handle = self._next_handle
                self._next_handle = handle + 1
            atomic_end()
            if handle:
                return handle
            with self._migrate_lock.write():
                old = self._obj_addr
                n = len(old)
                grown = np.zeros(2 * n, dtype=np.int64)
                addr = memoryview(grown)
                atomic_begin()
                if len(self._addr) == n:  # (else another task grew it meanwhile)
                    for i in range(n):
                        addr[i] = self._addr[i]
                    self._obj_addr = grown
                    self._addr = addr
                atomic_end()

    def cache_free_handle(self, handle: int) -> None:
        """``cache_free_handle`` (``kmem_cache_free``): the handle heads the free
        list, in one atomic step."""
        atomic_begin()
        self._addr[handle] = -self._free_handle
        self._free_handle = handle
        atomic_end()

    def _handle_to_obj(self, handle: int) -> int:
        """``handle_to_obj``: the object the handle names, as its arena offset (the
        kernel's ``obj`` encodes the page and the index; the offset holds both).
        A handle that names none (0, beyond the table, or free) is a ``ValueError``."""
        obj = self._addr[handle] if 0 < handle < self._next_handle else 0
        if obj <= 0:  # (a free handle's entry links the free list)
            raise ValueError(f"zsmalloc: invalid handle {handle}")
        return obj

    def _obj_to_zspage(self, obj: int) -> Zspage:
        """``obj_to_zpdesc`` + ``get_zspage``: the zspage whose page holds the object."""
        return self._page_zspage[obj >> _PG_SHIFT]

    def _obj_idx(self, zspage: Zspage, obj: int) -> int:
        """The object's index in its zspage (the index half of ``obj_to_location``)."""
        cls = zspage.cls
        return (obj - zspage.base - (0 if cls.huge else _HDR)) // cls.size

    def _obj_to_location(self, obj: int) -> tuple[Zspage, int]:
        """``obj_to_location``: the zspage and the object's index in it."""
        zspage = self._obj_to_zspage(obj)
        return zspage, self._obj_idx(zspage, obj)

    # -- zspages -----------------------------------------------------------

    def alloc_zspage(self, cls: SizeClass) -> Zspage | None:
        """``alloc_zspage``: ``pages_per_zspage`` contiguous arena pages, or ``None``
        when the arena is used up (the kernel's page allocation failing);
        then ``init_zspage``."""
        pages = cls.pages_per_zspage
        spin_lock(self._stat_lock)
        try:
            extents = self._free_extents[pages]
            if extents:
                base = extents.pop()
            elif self._arena_top + pages * _PG_SIZE <= self._arena_size:
                base = self._arena_top
                self._arena_top = base + pages * _PG_SIZE
                self._page_zspage.extend([None] * pages)
                if self._arena_top > self._populated:
                    self._populate()
            else:
                base = self._split_extent(pages)
                if base < 0:
                    return None
            zid = self._next_zspage_id
            self._next_zspage_id = zid + 1
            zspage = Zspage.__new__(Zspage)  # cache_alloc_zspage
            _zspage_init(zspage, zid, cls, base)
            self._nr_zspages += 1
            first = base >> _PG_SHIFT
            for i in range(first, first + pages):
                self._page_zspage[i] = zspage
        finally:
            spin_unlock(self._stat_lock)
        self.init_zspage(cls, zspage)
        return zspage

    def _populate(self) -> None:
        """Make the next ``_POPULATE_CHUNK`` of the arena present (``MADV_POPULATE_WRITE``);
        on a host kernel without it, its pages fault in on first use as before."""
        start = self._populated
        end = min(max(self._arena_top, start + _POPULATE_CHUNK), self._arena_size)
        try:
            self._arena.madvise(_MADV_POPULATE_WRITE, start, end - start)
        except OSError:
            pass
        self._populated = end

    def init_zspage(self, cls: SizeClass, zspage: Zspage) -> None:
        """``init_zspage``: link every object into the free list, object 0 first
        (``link->next = (i + 1) << OBJ_TAG_BITS``; the last one ends it).
        (Compiled, ``self._words`` is indexed in place: a typed name for it
        would be a view acquired and released, two atomic operations that
        wait for these stores to reach memory.)"""
        step = cls.size >> 3
        w = zspage.base >> 3
        for i in range(1, cls.objs_per_zspage):
            self._words[w] = i << _TAG_BITS
            w += step
        self._words[w] = _LAST_LINK
        zspage.freeobj = 0

    def _split_extent(self, pages: int) -> int:
        """The arena is used up: carve the pages out of a larger free extent (-1: none)."""
        for bigger in range(pages + 1, CHAIN_SIZE_MAX + 1):
            if self._free_extents[bigger]:
                base = self._free_extents[bigger].pop()
                self._free_extents[bigger - pages].append(base + pages * PAGE_SIZE)
                return base
        return -1

    def _free_zspage(self, cls: SizeClass, zspage: Zspage) -> None:
        """``free_zspage``: unlink it and give its pages back (class lock held)."""
        remove_zspage(cls, zspage)
        cls.objs_allocated -= cls.objs_per_zspage
        spin_lock(self._stat_lock)
        try:
            self._nr_zspages -= 1
            first = zspage.base >> _PG_SHIFT
            for i in range(first, first + cls.pages_per_zspage):
                self._page_zspage[i] = None
            self._free_extents[cls.pages_per_zspage].append(zspage.base)
            self.pages_allocated -= cls.pages_per_zspage
        finally:
            spin_unlock(self._stat_lock)

    # -- allocation --------------------------------------------------------

    def obj_malloc(self, zspage: Zspage, handle: int) -> None:
        """``obj_malloc``: take the zspage's first free object (its link names
        the next), tag the object's header with the handle (a huge object has
        none) and record where the handle's object lives (``record_obj``);
        class lock held."""
        cls = zspage.cls
        obj_idx = zspage.freeobj
        addr = zspage.base + obj_idx * cls.size
        zspage.freeobj = (self._words[addr >> 3] >> _TAG_BITS) & _FREEOBJ_MASK
        zspage.inuse += 1
        if cls.huge:
            zspage.huge_handle = handle
        else:
            self._words[addr >> 3] = handle << _TAG_BITS | _TAG
            addr += _HDR
        self._addr[handle] = addr

    @cython.locals(cls=SizeClass, zspage=Zspage, handle=cython.long, fg=cython.int)
    def zs_malloc(self, size: int) -> int:
        """``zs_malloc``: allocate a ``size``-byte object; its handle, or a negative
        errno (the kernel's ``ERR_PTR`` value: test it with :func:`IS_ERR_VALUE`).

        ``-EINVAL`` for 0 bytes, ``-ENOSPC`` above PAGE_SIZE, ``-ENOMEM`` when
        no zspage can be had.  The head zspage of the fullest non-full group
        takes the object; with none, the class lock is dropped while a new
        zspage is allocated, as in the kernel (so two writers of one class
        can both create one).
        """
        if size <= 0:
            return -errno.EINVAL
        if size > _MAX_ALLOC:  # ZS_MAX_ALLOC_SIZE
            return -errno.ENOSPC
        handle = self.cache_alloc_handle()
        cls = self.class_of_len[size]  # size + ZS_HANDLE_SIZE -> its class
        spin_lock(cls.lock)
        try:
            fg = _FULLEST[cls.nonempty & _NONFULL_GROUPS]
            if fg >= 0:  # find_get_zspage: the head of the fullest non-full group
                zspage = cls.fullness_list[fg]
                self.obj_malloc(zspage, handle)
                fix_fullness_group(cls, zspage)
                cls.objs_inuse += 1
                return handle
        finally:
            spin_unlock(cls.lock)
        zspage = self.alloc_zspage(cls)
        if zspage is None:
            self.cache_free_handle(handle)
            return -errno.ENOMEM
        spin_lock(cls.lock)
        try:
            self.obj_malloc(zspage, handle)
            insert_zspage(cls, zspage, cls.fg_of[zspage.inuse])
            spin_lock(self._stat_lock)  # atomic_long_add(pages_per_zspage, &pages_allocated)
            try:
                self.pages_allocated += cls.pages_per_zspage
            finally:
                spin_unlock(self._stat_lock)
            cls.objs_allocated += cls.objs_per_zspage
            cls.objs_inuse += 1
        finally:
            spin_unlock(cls.lock)
        return handle

    def _obj_handle(self, zspage: Zspage, obj_idx: int) -> int:
        """The handle in object ``obj_idx``'s header, 0 if the object is free."""
        cls = zspage.cls
        if cls.huge:
            return zspage.huge_handle
        word = self._words[(zspage.base + obj_idx * cls.size) >> 3]
        return word >> _TAG_BITS if word & _TAG else 0

    def _obj_free(self, zspage: Zspage, obj: int) -> None:
        """``obj_free``: the object (in ``zspage``, which holds it) gets its first
        word linked to the old first free object, and becomes the first free one."""
        cls = zspage.cls
        obj_idx = self._obj_idx(zspage, obj)
        link = zspage.freeobj
        self._words[(zspage.base + obj_idx * cls.size) >> 3] = link << _TAG_BITS
        if cls.huge:
            zspage.huge_handle = 0
        zspage.freeobj = obj_idx
        zspage.inuse -= 1

    @cython.locals(cls=SizeClass, zspage=Zspage, obj=cython.Py_ssize_t)
    def zs_free(self, handle: int) -> None:
        """``zs_free``: free the object; an emptied zspage is released at once.

        The handle is resolved under ``migrate_lock`` (read) and the class
        lock taken before it is dropped, so compaction cannot move the
        object in between.  0 and error values are ignored, as the kernel's
        ``IS_ERR_OR_NULL`` test does.
        """
        if handle <= 0:
            return
        migrate = self._migrate_lock
        migrate.down_read()
        try:
            obj = self._handle_to_obj(handle)
            zspage = self._obj_to_zspage(obj)
            cls = zspage.cls
            spin_lock(cls.lock)
        finally:
            migrate.up_read()
        try:
            cls.objs_inuse -= 1
            self._obj_free(zspage, obj)
            if fix_fullness_group(cls, zspage) == _EMPTY:  # ZS_INUSE_RATIO_0
                self._free_zspage(cls, zspage)
        finally:
            spin_unlock(cls.lock)
        self.cache_free_handle(handle)

    # -- object access -----------------------------------------------------

    def migrate_read(self):
        """``migrate_read_lock`` as a context: no object moves inside it."""
        return self._migrate_lock.read()

    def zs_obj_read_begin(self, handle: int) -> int:
        """``zs_obj_read_begin``: the arena offset of the object's data, readable
        until :meth:`zs_obj_read_end`.  The kernel holds the zspage's read lock
        in between; pyzram holds the pool's ``migrate_lock`` (read), which keeps
        compaction from moving any object meanwhile."""
        self._migrate_lock.down_read()
        return self._addr[handle]

    def zs_obj_read_end(self, handle: int) -> None:
        """``zs_obj_read_end``."""
        self._migrate_lock.up_read()

    def obj_addr(self, handle: int) -> int:
        """The arena offset of a handle's object (``migrate_read`` held)."""
        return self._addr[handle]

    def _obj_span(self, handle: int, length: int) -> int:
        obj = self._handle_to_obj(handle)
        cls = self._obj_to_zspage(obj).cls
        if length > cls.size - (0 if cls.huge else _HDR):
            raise ValueError(f"{length} bytes do not fit a {cls.size}-byte object")
        return obj

    def zs_obj_write(self, handle: int, handle_mem: Any, mem_len: int) -> None:
        """``zs_obj_write``: copy the first ``mem_len`` bytes of ``handle_mem`` into
        the object.

        Under ``migrate_lock`` (read), so compaction cannot move the object
        while it is written.  As in the kernel, the length is the caller's
        to get right (zram writes at most the object's size).
        """
        self._migrate_lock.down_read()
        off = self._addr[handle]
        memcpy(self.mem, off, handle_mem, 0, mem_len)
        self._migrate_lock.up_read()

    def zs_obj_read(self, handle: int, length: int) -> bytes:
        """``zs_obj_read_begin`` + copy + ``zs_obj_read_end``: the object's first
        ``length`` bytes, copied under ``migrate_lock`` (read)."""
        with self._migrate_lock.read():
            off = self._obj_span(handle, length)
            return bytes(self.arena[off : off + length])

    def zs_get_total_pages(self) -> int:
        """``zs_get_total_pages``: pages held by live zspages (zram's mem_used_total)."""
        return self.pages_allocated

    # -- compaction --------------------------------------------------------

    @staticmethod
    def zs_can_compact(cls: SizeClass) -> int:
        """``zs_can_compact``: pages freeable by packing the class's objects tightly."""
        if cls.objs_allocated <= cls.objs_inuse:
            return 0
        return (cls.objs_allocated - cls.objs_inuse) // cls.objs_per_zspage * cls.pages_per_zspage

    def _isolate(self, cls: SizeClass, groups: range) -> Zspage | None:
        for fg in groups:
            zspage = cls.fullness_list[fg]
            if zspage is not None:
                remove_zspage(cls, zspage)
                return zspage
        return None

    def _putback_zspage(self, cls: SizeClass, zspage: Zspage) -> int:
        fg = get_fullness_group(cls, zspage.inuse)
        insert_zspage(cls, zspage, fg)
        return fg

    def _migrate_zspage(self, src: Zspage, dst: Zspage) -> None:
        """``migrate_zspage``: move src's objects, lowest index first, until dst is full."""
        cls = src.cls
        objs, size = cls.objs_per_zspage, cls.size
        hdr = 0 if cls.huge else ZS_HANDLE_SIZE
        for obj_idx in range(objs):
            handle = self._obj_handle(src, obj_idx)
            if not handle:
                continue
            used_obj = self._handle_to_obj(handle)
            self.obj_malloc(dst, handle)  # tags dst's header, records the new place
            s0, d0 = used_obj - hdr, self._addr[handle] - hdr
            memcpy(self.mem, d0, self.arena, s0, size)  # zs_object_copy
            self._obj_free(src, used_obj)
            if dst.inuse == objs or src.inuse == 0:
                break

    @cython.locals(cls=SizeClass)
    def _zs_compact_class(self, cls: SizeClass) -> int:
        """``__zs_compact``: one class, from the fullest destination down."""
        pages_freed = 0
        dst: Zspage | None = None
        with self._migrate_lock.write():
            spin_lock(cls.lock)
            try:
                while self.zs_can_compact(cls):
                    if dst is None:
                        dst = self._isolate(
                            cls, range(ZS_INUSE_RATIO_99, ZS_INUSE_RATIO_10 - 1, -1)
                        )
                        if dst is None:
                            break
                    src = self._isolate(cls, range(ZS_INUSE_RATIO_10, ZS_INUSE_RATIO_99 + 1))
                    if src is None:
                        break
                    self._migrate_zspage(src, dst)
                    if self._putback_zspage(cls, src) == ZS_INUSE_RATIO_0:
                        self._free_zspage(cls, src)
                        pages_freed += cls.pages_per_zspage
                    if get_fullness_group(cls, dst.inuse) == ZS_INUSE_RATIO_100:
                        self._putback_zspage(cls, dst)
                        dst = None
                if dst is not None:
                    self._putback_zspage(cls, dst)
            finally:
                spin_unlock(cls.lock)
        return pages_freed

    def zs_compact(self) -> int:
        """``zs_compact``: compact every class, largest first; returns pages freed.

        A second concurrent caller returns 0 at once, as in the kernel.
        """
        if not self._compaction_in_progress.acquire(blocking=False):
            return 0
        try:
            freed = 0
            for i in range(ZS_SIZE_CLASSES - 1, -1, -1):
                cls = self.size_class[i]
                if cls.index == i:
                    freed += self._zs_compact_class(cls)
            spin_lock(self._stat_lock)
            try:
                self.pages_compacted += freed
            finally:
                spin_unlock(self._stat_lock)
            return freed
        finally:
            self._compaction_in_progress.release()

    # -- introspection (tests, reports) --------------------------------------

    def live_zspages(self) -> int:
        """Number of zspages currently allocated."""
        return self._nr_zspages

    def free_objects(self, zspage: Zspage) -> list[int]:
        """The zspage's free objects, in free-list order (``freeobj`` first)."""
        cls = zspage.cls
        out = []
        idx = zspage.freeobj
        for _ in range(cls.objs_per_zspage - zspage.inuse):
            out.append(idx)
            idx = (self._words[(zspage.base + idx * cls.size) >> 3] >> OBJ_TAG_BITS) & _FREEOBJ_MASK
        return out

    def check(self) -> None:
        """Assert internal consistency (tests): counters equal what the lists hold."""
        pages = 0
        nr_zspages = 0
        for cls in self.classes:
            listed = []
            for fg in range(NR_FULLNESS_GROUPS):
                zspages = cls.zspages(fg)
                assert bool(zspages) == bool(cls.nonempty >> fg & 1), "nonempty mask"
                for pos, z in enumerate(zspages):
                    assert z.prev is (zspages[pos - 1] if pos else None), "broken list"
                listed += zspages
            assert cls.objs_allocated == len(listed) * cls.objs_per_zspage
            assert cls.objs_inuse == sum(z.inuse for z in listed)
            for z in listed:
                assert z.fullness == get_fullness_group(cls, z.inuse), "misfiled zspage"
                assert z.fullness != ZS_INUSE_RATIO_0, "empty zspage not freed"
                free = self.free_objects(z)
                assert len(set(free)) == len(free) == cls.objs_per_zspage - z.inuse
                assert all(0 <= i < cls.objs_per_zspage for i in free), "free list runs off"
                for idx in range(cls.objs_per_zspage):
                    h = self._obj_handle(z, idx)
                    assert bool(h) == (idx not in free), "header disagrees with the free list"
                    if h:
                        assert self._obj_to_location(self._handle_to_obj(h)) == (z, idx)
                first = z.base >> PAGE_SHIFT
                assert all(
                    self._page_zspage[i] is z for i in range(first, first + cls.pages_per_zspage)
                )
            pages += len(listed) * cls.pages_per_zspage
            nr_zspages += len(listed)
        assert pages == self.pages_allocated
        assert nr_zspages == self._nr_zspages
