"""The host kernel's real zram, driven through sysfs and /dev/zramN (for validation)."""
