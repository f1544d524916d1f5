"""The block layer (block/ in the kernel): bios, block devices, a file-backed disk."""
