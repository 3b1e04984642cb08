# The flash file system: the VM's POSIX VFS rooted at /flash, reporting the board's size.
# Capacity (ENOSPC) and durability (data survives a power cut once closed or flushed) are
# enforced underneath, in the runner's file-system hooks.
import os

import _emu


class Flash(os.VfsPosix):
    def __init__(self, root, size, block):
        super().__init__(root)
        self._size = size
        self._block = block

    def statvfs(self, path):
        b = self._block
        total = self._size // b
        free = max(0, total - _emu.flash_usage() // b)
        return (b, b, total, free, free, 0, 0, 0, 0, 255)
