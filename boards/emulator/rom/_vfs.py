# The flash file system: the VM's POSIX VFS rooted at /flash, made to behave as LittleFS v2 does
# on the esp32 and rp2 ports (extmod/vfs_lfsx.c), and reporting the board's size. Capacity
# (ENOSPC) and durability (data survives a power cut once closed or flushed) are enforced
# underneath, in the runner's file-system hooks.
import os

import _emu

_DIR = 0x4000
_EISDIR = 21


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

    def ilistdir(self, path):
        # LittleFS gives (name, type, inode 0, size); POSIX gives (name, type, inode).
        base = path if path.endswith("/") else path + "/"
        for t in super().ilistdir(path):
            size = 0
            if t[1] != _DIR:
                size = super().stat(base + t[0])[6]
            yield (t[0], t[1], 0, size)

    def remove(self, path):
        # lfs_remove() takes an empty directory as well as a file.
        if super().stat(path)[0] & _DIR:
            return super().rmdir(path)
        return super().remove(path)

    def open(self, path, mode):
        # LittleFS refuses to open a directory (EISDIR); POSIX reads it as an empty file.
        try:
            st = super().stat(path)
        except OSError:
            st = None
        if st is not None and st[0] & _DIR:
            raise OSError(_EISDIR)
        return super().open(path, mode)
