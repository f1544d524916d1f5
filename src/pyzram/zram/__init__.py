"""The zram driver (drivers/block/zram/ in the kernel)."""
