"""Memory management: zsmalloc now; the swap core comes with the swap_ops work."""
