"""pyzram's zswap against the host kernel's (root, zswap built in; every parameter restored)."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from pyzram.host.kernel_zswap import (
    KernelZswap,
    read_debugfs,
    read_param,
    unavailable_reason,
    write_param,
)
from pyzram.mm.zswap import PARAMETERS, Zswap, host_crypto_compressors
from pyzram.tools.commands.store import zswap_pageout
from pyzram.workload.pages import synthetic_mix_with_kinds

_REASON = unavailable_reason()

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]


def _pages(n: int = 1200) -> np.ndarray:
    pages, _ = synthetic_mix_with_kinds(n, seed=3)
    return pages


@pytest.mark.parametrize("compressor", ["lzo", "lzo-rle"])
def test_pageout_counters_equal_the_kernel(compressor):
    pages = _pages()
    with KernelZswap(compressor=compressor) as k:
        kern = k.pageout(pages, read_back=True)
    ours = zswap_pageout(pages, compressor, compressors=host_crypto_compressors(), read_back=True)
    for name in ("stored_pages", "stored_incompressible_pages", "pool_total_size"):
        assert ours["debugfs"][name] == kern["debugfs"][name], name
    for name in ("zswpout", "swpout_zero", "pswpout"):
        assert ours["vmstat"][name] == kern["vmstat"][name], name
    assert kern["read_back_equal"] and ours["read_back_equal"]
    assert kern["vmstat_read_back"]["zswpin"] == ours["vmstat_read_back"]["zswpin"]


def test_parameter_writes_equal_the_kernel():
    """The outcome (errno or text) of each write, on the host and on a set-up model."""
    writes = [
        ("max_pool_percent", "abc"),
        ("max_pool_percent", "-1"),
        ("max_pool_percent", "4294967296"),
        ("max_pool_percent", "0x0f\n"),
        ("accept_threshold_percent", "+80"),
        ("shrinker_enabled", "maybe"),
        ("shrinker_enabled", "off"),
        ("compressor", "lz4"),
        ("compressor", "nosuch"),
        ("compressor", "sha256"),
        ("compressor", " lzo-rle \n"),
        ("enabled", "x"),
    ]
    saved = {n: read_param(n) for n in PARAMETERS}
    model = Zswap(compressors=host_crypto_compressors())
    model.param_write("enabled", "N")  # the host's zswap may be set up already: so is this one
    try:
        write_param("enabled", "N")
        for name, value in writes:
            outcome = []
            for write, read in ((write_param, read_param), (model.param_write, model.param_read)):
                try:
                    write(name, value)
                    outcome.append(read(name))
                except OSError as e:
                    outcome.append(errno.errorcode[e.errno])
            assert outcome[0] == outcome[1], (name, value, outcome)
    finally:
        for name in ("compressor", "max_pool_percent", "accept_threshold_percent"):
            write_param(name, saved[name])
        write_param("shrinker_enabled", saved["shrinker_enabled"])
        write_param("enabled", saved["enabled"])
    assert {n: read_param(n) for n in PARAMETERS} == saved


def test_pool_limit_reached_rejects_and_queues_writeback():
    """max_pool_percent 0: every store hits the limit; the pages go to the swap area."""
    pages = _pages(300)
    with KernelZswap(compressor="lzo", params={"max_pool_percent": "0"}) as k:
        kern = k.pageout(pages, read_back=True)
    model = zswap_pageout(
        pages, "lzo", compressors=host_crypto_compressors(), params={"max_pool_percent": "0"}
    )
    nonzero = kern["vmstat"]["pswpout"]
    assert kern["debugfs"]["stored_pages"] == 0
    assert kern["debugfs"]["pool_limit_hit"] == nonzero > 0
    assert kern["vmstat"]["zswpout"] == 0
    assert model["debugfs"]["pool_limit_hit"] == nonzero
    assert model["vmstat"]["pswpout"] == nonzero and model["debugfs"]["stored_pages"] == 0
    assert kern["read_back_equal"]
    assert read_debugfs()["stored_pages"] >= 0
