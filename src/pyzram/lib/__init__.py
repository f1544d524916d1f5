"""Small kernel library routines the sysfs handlers depend on (lib/ in the kernel)."""
