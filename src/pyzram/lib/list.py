"""Doubly linked lists through their members (model of include/linux/list.h:
``struct list_head``, ``list_add_tail``, ``list_del``, ``list_move_tail``).

The kernel links a folio into an LRU list, or a zswap entry into its
memcg's ``list_lru``, through a ``struct list_head`` inside it, so adding,
deleting and taking the oldest are a few pointer moves and need no lookup.
Here a member *is* a :class:`ListHead` (``Folio`` and ``ZswapEntry`` derive
from it: ``folio->lru``, ``entry->lru``), and a :class:`List` is the list's
head: its oldest and newest members and how many there are.  A member also
knows which list it is on (``lru_list``), which the kernel tells from page
flags (``PG_lru``, ``PG_active``) or the memcg; so whether a member is on
a given list is one compare.
"""

from __future__ import annotations

import cython


@cython.cclass
class ListHead:
    """``struct list_head`` in a member: its neighbours and the list it is on."""

    __slots__ = ("lru_prev", "lru_next", "lru_list")

    def __init__(self) -> None:
        INIT_LIST_HEAD(self)


@cython.cclass
class List:
    """A list's head: ``oldest`` .. ``newest`` (the one added last) and ``nr``."""

    def __init__(self) -> None:
        self.oldest: ListHead | None = None
        self.newest: ListHead | None = None
        self.nr = 0

    def __len__(self) -> int:
        return self.nr

    def __iter__(self):
        """Oldest first (a snapshot)."""
        members = []
        node = self.oldest
        while node is not None:
            members.append(node)
            node = node.lru_next
        return iter(members)


def INIT_LIST_HEAD(node: ListHead) -> None:  # noqa: N802  (the kernel's name)
    """``INIT_LIST_HEAD``: on no list (what a member's constructor calls)."""
    node.lru_prev = None
    node.lru_next = None
    node.lru_list = None


def list_add_tail(head: List, node: ListHead) -> None:
    """``list_add_tail``: ``node`` becomes the newest member."""
    newest = head.newest
    node.lru_prev = newest
    node.lru_next = None
    node.lru_list = head
    if newest is None:
        head.oldest = node
    else:
        newest.lru_next = node
    head.newest = node
    head.nr += 1


def list_del(head: List, node: ListHead) -> None:
    """``list_del``: off the list, its neighbours joined."""
    prev, nxt = node.lru_prev, node.lru_next
    if prev is None:
        head.oldest = nxt
    else:
        prev.lru_next = nxt
    if nxt is None:
        head.newest = prev
    else:
        nxt.lru_prev = prev
    node.lru_prev = node.lru_next = None
    node.lru_list = None
    head.nr -= 1


def list_move_tail(head: List, node: ListHead) -> None:
    """``list_move_tail``: ``node`` becomes the newest member."""
    list_del(head, node)
    list_add_tail(head, node)
