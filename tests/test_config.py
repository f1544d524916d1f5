"""ZramConfig: Kconfig parsing and the options' effect on a device."""

import errno
import os

import pytest

from pyzram import Zram, ZramConfig

HOST_LIKE = """
CONFIG_ZSMALLOC=y
CONFIG_ZSMALLOC_CHAIN_SIZE=8
CONFIG_ZRAM=y
CONFIG_ZRAM_BACKEND_LZ4=y
# CONFIG_ZRAM_BACKEND_LZ4HC is not set
CONFIG_ZRAM_BACKEND_LZO=y
CONFIG_ZRAM_DEF_COMP="lzo-rle"
# CONFIG_ZRAM_WRITEBACK is not set
"""


def test_from_kconfig_text():
    cfg = ZramConfig.from_kconfig_text(HOST_LIKE)
    assert cfg.backends == ("lzo-rle", "lzo", "lz4")
    assert cfg.default_comp == "lzo-rle"
    assert cfg.zsmalloc_chain_size == 8
    assert not cfg.track_entry_actime
    dev = Zram(cfg)
    assert dev.sysfs["comp_algorithm"] == "[lzo-rle] lzo lz4 \n"
    with pytest.raises(OSError) as e:
        dev.sysfs["comp_algorithm"] = "zstd"  # not built in this profile
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        dev.sysfs["idle"] = "60"  # ages need TRACK_ENTRY_ACTIME
    assert e.value.errno == errno.EINVAL


def test_other_profiles():
    cfg = ZramConfig.from_kconfig_text(
        HOST_LIKE.replace("CHAIN_SIZE=8", "CHAIN_SIZE=16").replace('"lzo-rle"', '"lz4"')
    )
    assert cfg.zsmalloc_chain_size == 16 and cfg.default_comp == "lz4"
    with pytest.raises(OSError) as e:
        ZramConfig.from_kconfig_text("CONFIG_ZRAM=n\n")
    assert e.value.errno == errno.ENODEV
    full = ZramConfig.from_kconfig_text(
        HOST_LIKE + "CONFIG_ZRAM_WRITEBACK=y\nCONFIG_ZRAM_MULTI_COMP=y\n"
    )
    assert full.writeback and full.multi_comp and full.max_comps == 4
    assert not cfg.writeback and cfg.max_comps == 1


def test_invalid_configs():
    with pytest.raises(ValueError):
        ZramConfig(zsmalloc_chain_size=3)
    with pytest.raises(ValueError):
        ZramConfig(backends=("lz4",), default_comp="zstd")
    with pytest.raises(ValueError):
        ZramConfig(backends=("lz5",))


@pytest.mark.parametrize("chain,huge", [(4, 3257), (16, 3833)])
def test_chain_size_changes_huge_threshold(chain, huge):
    dev = Zram(ZramConfig(zsmalloc_chain_size=chain))
    dev.sysfs["disksize"] = "1M"
    assert dev.huge_class_size == huge


@pytest.mark.skipif(not os.path.exists("/proc/config.gz"), reason="no /proc/config.gz")
def test_from_running_kernel():
    cfg = ZramConfig.from_running_kernel()
    assert cfg.default_comp in cfg.backends
    assert cfg.kernel_release


def test_missing_config_file(tmp_path):
    with pytest.raises(OSError) as e:
        ZramConfig.from_running_kernel(str(tmp_path / "nope.gz"))
    assert e.value.errno == errno.ENOENT
