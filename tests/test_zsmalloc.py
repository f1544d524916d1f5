"""mm/zsmalloc.c model: classes, placement, fullness groups, free, compaction."""

import errno
import random
import re
import sys
import threading

import pytest

from pyzram.mm.zsmalloc import (
    IS_ERR_VALUE,
    ZS_INUSE_RATIO_100,
    ZsPool,
    calculate_zspage_chain_size,
    get_fullness_group,
)

# zram-spec.md section 5.1: "comp_len range -> slot size / pages / objects" (chain 8).
SPEC_TABLE = """
1-24:32/1/128       25-40:48/3/256      41-56:64/1/64       57-72:80/5/256
73-88:96/3/128      89-104:112/7/256    105-120:128/1/32    121-136:144/7/199
137-152:160/5/128   153-168:176/4/93    169-184:192/3/64    185-200:208/3/59
201-216:224/7/128   217-232:240/1/17    233-248:256/1/16    249-264:272/1/15
265-280:288/5/71    281-296:304/7/94    297-312:320/5/64    313-328:336/6/73
329-344:352/8/93    345-360:368/8/89    361-376:384/3/32    377-392:400/5/51
393-408:416/6/59    409-424:432/7/66    425-440:448/7/64    441-456:464/5/44
457-472:480/2/17    473-488:496/4/33    489-504:512/1/8     505-520:528/4/31
521-536:544/2/15    537-552:560/7/51    553-568:576/1/7     569-584:592/8/55
585-600:608/7/47    601-616:624/2/13    617-632:640/5/32    633-648:656/5/31
649-664:672/1/6     665-680:688/8/47    681-696:704/5/29    697-712:720/3/17
713-728:736/2/11    729-744:752/7/38    745-760:768/3/16    761-776:784/5/26
777-808:816/1/5     809-824:832/8/39    825-840:848/5/24    841-856:864/7/33
857-872:880/8/37    873-888:896/7/32    889-904:912/7/31    905-920:928/5/22
921-936:944/3/13    937-952:960/4/17    953-968:976/6/25    969-984:992/8/33
985-1016:1024/1/4   1017-1048:1056/8/31 1049-1064:1072/5/19 1065-1080:1088/4/15
1081-1096:1104/3/11 1097-1112:1120/8/29 1113-1128:1136/5/18 1129-1160:1168/2/7
1161-1176:1184/7/24 1177-1192:1200/5/17 1193-1208:1216/3/10 1209-1224:1232/7/23
1225-1240:1248/4/13 1241-1272:1280/5/16 1273-1288:1296/7/22 1289-1352:1360/1/3
1353-1416:1424/8/23 1417-1432:1440/6/17 1433-1448:1456/5/14 1449-1480:1488/4/11
1481-1496:1504/7/19 1497-1528:1536/3/8  1529-1544:1552/8/21 1545-1560:1568/5/13
1561-1576:1584/7/18 1577-1624:1632/2/5  1625-1672:1680/7/17 1673-1688:1696/5/12
1689-1704:1712/8/19 1705-1736:1744/3/7  1737-1784:1792/7/16 1785-1800:1808/4/9
1801-1848:1856/5/11 1849-1880:1888/6/13 1881-1896:1904/7/15 1897-1912:1920/8/17
1913-2040:2048/1/2  2041-2168:2176/8/15 2169-2184:2192/7/13 2185-2216:2224/6/11
2217-2264:2272/5/9  2265-2328:2336/4/7  2329-2376:2384/7/12 2377-2440:2448/3/5
2441-2504:2512/8/13 2505-2552:2560/5/8  2553-2584:2592/7/11 2585-2712:2720/2/3
2713-2856:2864/7/10 2857-2904:2912/5/7  2905-2968:2976/8/11 2969-3064:3072/3/4
3065-3176:3184/7/9  3177-3256:3264/4/5  3257-3400:3408/5/6  3401-3496:3504/6/7
3497-3576:3584/7/8  3577-3624:3632/8/9  3625-4096:4096/1/1
"""


def test_class_table_matches_spec():
    pool = ZsPool(chain_size=8)
    entries = re.findall(r"(\d+)-(\d+):(\d+)/(\d+)/(\d+)", SPEC_TABLE)
    assert entries
    for lo, hi, size, pages, objs in entries:
        for n in (int(lo), int(hi)):
            c = pool.lookup_class(n)
            assert (c.size, c.pages_per_zspage, c.objs_per_zspage) == (
                int(size),
                int(pages),
                int(objs),
            ), n
    assert len(pool.classes) == 119


@pytest.mark.parametrize("chain,huge", [(4, 3257), (8, 3625), (16, 3833)])
def test_huge_class_size(chain, huge):
    pool = ZsPool(chain_size=chain)
    assert pool.huge_class_size == huge
    assert pool.lookup_class(huge).huge
    assert not pool.lookup_class(huge - 1).huge


def test_chain_size_range():
    with pytest.raises(ValueError):
        ZsPool(chain_size=3)
    with pytest.raises(ValueError):
        ZsPool(chain_size=17)
    assert calculate_zspage_chain_size(2048, 8) == 1
    assert calculate_zspage_chain_size(3632, 8) == 8


def test_malloc_errors():
    """``zs_malloc`` returns the kernel's ERR_PTR values, never a handle, for bad
    sizes and an exhausted arena, and leaves the pool as it was."""
    pool = ZsPool(max_bytes=4 * 4096)
    assert pool.zs_malloc(0) == -errno.EINVAL
    assert pool.zs_malloc(4097) == -errno.ENOSPC
    assert IS_ERR_VALUE(-errno.EINVAL) and not IS_ERR_VALUE(pool.zs_malloc(4096))
    hs = []
    while not IS_ERR_VALUE(h := pool.zs_malloc(4096)):
        hs.append(h)
    assert h == -errno.ENOMEM and pool.pages_allocated == len(hs) + 1
    pool.check()
    pool.zs_free(hs.pop())
    assert not IS_ERR_VALUE(pool.zs_malloc(4096))  # the freed zspage's pages come back
    pool.check()


def test_pages_order_independent_without_frees():
    # 9 vs 10 objects of the 3632 class (9 per 8-page zspage) -> 8 vs 16 pages.
    for count, pages in ((9, 8), (10, 16)):
        pool = ZsPool()
        for _ in range(count):
            pool.zs_malloc(3624)
        assert pool.pages_allocated == pages
        pool.check()


def test_the_arena_is_made_present_ahead_of_its_use():
    """As the used part of the arena grows, the pages past it are made present a
    chunk at a time (``MADV_POPULATE_WRITE``), never behind it; a recycled
    arena's pages that an earlier pool used are present already."""
    from pyzram.mm.zsmalloc import _POPULATE_CHUNK

    pool = ZsPool()
    handles = []
    for i in range(600):  # 600 objects of 3624 bytes: well past one chunk
        handles.append(pool.zs_malloc(3624))
        assert pool._arena_top <= pool._populated, i
    ahead = pool._arena_top + _POPULATE_CHUNK + 8 * 4096
    assert pool._populated < max(ahead, pool._dirty_top + 1)
    for h in handles:
        pool.zs_free(h)
    pool.check()


def test_lifo_reuse_and_data():
    pool = ZsPool()
    hs = [pool.zs_malloc(1000) for _ in range(4)]  # class 1024: 4 per page
    for i, h in enumerate(hs):
        pool.zs_obj_write(h, bytes([i]) * 1000, 1000)
    assert pool.pages_allocated == 1
    pool.zs_free(hs[1])
    h = pool.zs_malloc(1000)
    zspage, idx = pool._obj_to_location(pool._handle_to_obj(h))
    assert idx == 1  # the freed object is reused first
    for i in (0, 2, 3):
        assert bytes(pool.zs_obj_read(hs[i], 1000)) == bytes([i]) * 1000
    for h2 in (hs[0], hs[2], hs[3], h):
        pool.zs_free(h2)
    assert pool.pages_allocated == 0  # empty zspage freed at once
    pool.check()


def test_free_handles_are_reused_last_freed_first_and_refused_meanwhile():
    """The free handles link through the handle table (``cache_free_handle``): the
    one freed last is given out first, and a free handle names no object."""
    pool = ZsPool()
    hs = [pool.zs_malloc(100) for _ in range(5)]
    for h in (hs[1], hs[3], hs[0]):
        pool.zs_free(h)
    for h in (hs[1], hs[3], hs[0]):
        with pytest.raises(ValueError, match="invalid handle"):
            pool._handle_to_obj(h)
    again = [pool.zs_malloc(100) for _ in range(4)]
    assert again == [hs[0], hs[3], hs[1], 6]  # last freed first, then a new one
    for h in again + [hs[2], hs[4]]:
        pool.zs_free(h)
    pool.check()


def test_the_handle_table_grows_while_other_tasks_take_and_free_handles():
    """The handle cache takes and gives back a handle in one atomic step each, and a
    full table grows (doubles) with its copy in one step too: tasks that allocate,
    write, read back and free at once, on a table made for 16 handles, never get a
    handle another holds and never lose an object's address."""
    pool = ZsPool(handles_hint=16)
    held: list[dict[int, bytes]] = [{} for _ in range(4)]
    errors: list[BaseException] = []

    def task(k: int) -> None:
        rng = random.Random(k)
        live = held[k]
        try:
            for _ in range(4000):
                if live and rng.random() < 0.3:
                    h = rng.choice(list(live))
                    data = live.pop(h)
                    assert pool.zs_obj_read(h, len(data)) == data
                    pool.zs_free(h)
                else:
                    data = rng.randbytes(rng.randint(1, 3000))
                    h = pool.zs_malloc(len(data))
                    pool.zs_obj_write(h, data, len(data))
                    live[h] = data
        except BaseException as e:  # (reported below, in the test's thread)
            errors.append(e)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch between almost any two steps
    try:
        tasks = [threading.Thread(target=task, args=(k,)) for k in range(4)]
        for t in tasks:
            t.start()
        for t in tasks:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors[0]
    handles = [h for live in held for h in live]
    assert len(handles) == len(set(handles)) > 16
    for live in held:
        for h, data in live.items():
            assert pool.zs_obj_read(h, len(data)) == data
    for h in handles:
        pool.zs_free(h)
    pool.check()


def test_allocation_prefers_fullest_zspage():
    pool = ZsPool()
    a = [pool.zs_malloc(1000) for _ in range(8)]  # zspages A (0-3) and B (4-7)
    for h in a[1:4] + a[5:6]:
        pool.zs_free(h)  # A: 1 used (25%), B: 3 used (75%)
    h = pool.zs_malloc(1000)
    zspage = pool._obj_to_zspage(pool._handle_to_obj(h))
    assert zspage is pool._obj_to_zspage(pool._handle_to_obj(a[4]))  # goes to B, the fuller one
    assert zspage.fullness == ZS_INUSE_RATIO_100
    pool.check()


def test_fullness_groups():
    pool = ZsPool()
    cls = pool.lookup_class(24)  # 128 objects per zspage
    assert get_fullness_group(cls, 0) == 0
    assert get_fullness_group(cls, 1) == 1  # 0% rounds into RATIO_10
    assert get_fullness_group(cls, 64) == 6
    assert get_fullness_group(cls, 127) == 10
    assert get_fullness_group(cls, 128) == 11


def test_compaction_spec_example():
    # zram-spec 9.4: 8 objects of class 1024 in zspages A, B; free 1,2,3,5,6.
    pool = ZsPool()
    hs = [pool.zs_malloc(1000) for _ in range(8)]
    for i, h in enumerate(hs):
        pool.zs_obj_write(h, bytes([i + 1]) * 1000, 1000)
    for i in (1, 2, 3, 5, 6):
        pool.zs_free(hs[i])
    assert pool.pages_allocated == 2
    assert pool.zs_compact() == 1
    assert pool.pages_allocated == 1
    assert pool.pages_compacted == 1
    assert pool.zs_compact() == 0
    for i in (0, 4, 7):
        assert bytes(pool.zs_obj_read(hs[i], 1000)) == bytes([i + 1]) * 1000
    pool.check()


def test_compaction_many_classes_keeps_data():
    import random

    rnd = random.Random(5)
    pool = ZsPool()
    live = {}
    for i in range(3000):
        n = rnd.choice([30, 100, 500, 1000, 1500, 3000, 3624, 4096])
        h = pool.zs_malloc(n)
        pool.zs_obj_write(h, bytes([i % 251]) * n, n)
        live[h] = (n, i % 251)
    for h in rnd.sample(sorted(live), 2000):
        pool.zs_free(h)
        del live[h]
    before = pool.pages_allocated
    freed = pool.zs_compact()
    assert freed > 0 and pool.pages_allocated == before - freed
    for h, (n, b) in live.items():
        assert bytes(pool.zs_obj_read(h, n)) == bytes([b]) * n
    pool.check()
    for cls in pool.classes:
        assert pool.zs_can_compact(cls) == 0


def _store_and_read_back(pool: ZsPool, size: int, count: int) -> None:
    """``count`` objects of ``size`` bytes, object ``i`` all ``i``: each reads back whole."""
    hs = [pool.zs_malloc(size) for _ in range(count)]
    for i, h in enumerate(hs):
        pool.zs_obj_write(h, bytes([i]) * size, size)
    assert [pool.zs_obj_read(h, size) for h in hs] == [bytes([i]) * size for i in range(count)]


def test_destroyed_pool_gives_its_arena_to_the_next_and_refuses_use():
    """``zs_destroy_pool``: the mapping goes to the next pool (its pages kept present, a
    small pool's), and the dead pool cannot touch it any more."""
    import pyzram.mm.zsmalloc as zsm

    old = ZsPool(max_bytes=1 << 20)
    h = old.zs_malloc(1000)
    old.zs_obj_write(h, b"x" * 1000, 1000)
    mapping = old._arena
    old.zs_destroy_pool()
    assert any(a is mapping for a, *_ in zsm._spare_arenas)
    with pytest.raises(ValueError):
        old.zs_obj_read(h, 1000)  # released: no write into the next pool's memory
    new = ZsPool(max_bytes=1 << 20)
    assert new._arena is mapping
    _store_and_read_back(new, 1000, 8)
    new.check()
    new.zs_compact()
    new.check()


def test_spare_arenas_keep_at_most_their_bound_present(monkeypatch):
    """A destroyed pool's used pages stay present while the spares kept present fit
    ``_SPARE_PRESENT_MAX``; past it they go back to the host (MADV_FREE), and either
    way the next pool reads back what it writes."""
    import pyzram.mm.zsmalloc as zsm

    monkeypatch.setattr(zsm, "_spare_arenas", [])

    def filled() -> ZsPool:
        pool = ZsPool(max_bytes=1 << 22)
        for _ in range(8):
            pool.zs_obj_write(pool.zs_malloc(3000), b"\xab" * 3000, 3000)
        return pool

    def destroy(pool: ZsPool) -> tuple[int, bool]:
        mapping = pool._arena
        pool.zs_destroy_pool()
        _, used, kept = next(s for s in zsm._spare_arenas if s[0] is mapping)
        return used, kept

    first, second = filled(), filled()  # two arenas
    top = first._arena_top
    monkeypatch.setattr(zsm, "_SPARE_PRESENT_MAX", top + second._arena_top - 1)
    assert destroy(first) == (top, True)
    assert destroy(second) == (second._arena_top, False)  # would pass the bound
    pool = ZsPool(max_bytes=1 << 22)  # takes the one given back last
    _store_and_read_back(pool, 3000, 40)
    pool.check()
    pool.zs_destroy_pool()


def test_recycled_arena_old_bytes_never_read_as_headers():
    """``init_zspage`` links every object of a new zspage, so whatever an
    earlier pool left in a recycled arena (tagged headers survive
    MADV_FREE) is never taken for an allocated object; and a pool knows how
    far earlier pools used its arena, to give those pages back.  Three pools
    in a row: a large one, a small one, then one that reaches past the small
    one's pages into the large one's."""
    import pyzram.mm.zsmalloc as zsm

    zsm._spare_arenas.clear()

    def fill(pool: ZsPool, size: int, count: int) -> list[int]:
        hs = [pool.zs_malloc(size) for _ in range(count)]
        for h in hs:
            pool.zs_obj_write(h, b"\xff" * size, size)  # the headers around are tagged
        return hs

    big = ZsPool(max_bytes=4 << 20)
    fill(big, 200, 2000)  # tagged headers every 208 bytes
    top = big._arena_top
    big.zs_destroy_pool()
    small = ZsPool(max_bytes=4 << 20)
    assert small._dirty_top == top
    fill(small, 1000, 10)
    small.zs_destroy_pool()
    third = ZsPool(max_bytes=4 << 20)
    assert third._dirty_top == top  # the large pool's pages are still dirty
    # Two objects in each of many classes: mostly free zspages over the large
    # pool's bytes, whose free objects' headers must read 0.
    hs = [third.zs_malloc(s) for s in range(100, 3000, 37) for _ in range(2)]
    third.check()  # every free object is on its free list, every live one tagged
    for h in hs[::3]:
        third.zs_free(h)
    third.zs_compact()
    third.check()


def test_zs_lookup_class_index_takes_the_size_as_given():
    """``zs_lookup_class_index`` (what ``recompress_slot`` compares) does not grow
    the size by the handle as ``zs_malloc`` does: 3625-3632 bytes are the largest
    normal class there, though ``zs_malloc`` puts them in the huge class."""
    pool = ZsPool()
    largest_normal = pool.size_class[ZsPool.class_index(3632)].index
    assert pool.huge_class_size == 3625
    for size in (3625, 3632):
        assert pool.zs_lookup_class_index(size) == largest_normal
        assert pool.lookup_class(size).huge  # where zs_malloc stores it
    huge = pool.zs_lookup_class_index(3633)
    assert huge == pool.size_class[ZsPool.class_index(3633)].index != largest_normal
    assert pool.zs_lookup_class_index(1000) == pool.size_class[ZsPool.class_index(1000)].index
