#!/usr/bin/env python3
"""A FUSE file system for tests: a directory of files kept in memory, whose writes hang once
the file TRIGGER exists (until the file system is killed, which fails them), as writes to a
stalled network mount do. Owned by root, as a directory owod writes to must be.

Usage: holdfs.py MOUNTPOINT TRIGGER  (runs in the foreground until killed)
"""
import errno
import os
import stat
import sys
import threading
import time

try:  # Debian's python3-fusepy names the module after the package
    from fusepy import FUSE, FuseOSError, Operations
except ImportError:
    from fuse import FUSE, FuseOSError, Operations


class HoldFs(Operations):
    def __init__(self, trigger):
        self.trigger = trigger
        self.files = {}  # name -> [mode, bytearray]
        self.mutex = threading.Lock()
        self.forever = threading.Event()

    def _file(self, path):
        try:
            return self.files[path[1:]]
        except KeyError:
            raise FuseOSError(errno.ENOENT)

    def getattr(self, path, fh=None):
        now = time.time()
        times = dict(st_atime=now, st_mtime=now, st_ctime=now, st_uid=0, st_gid=0)
        if path == "/":
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, **times)
        with self.mutex:
            mode, data = self._file(path)
            ino = list(self.files).index(path[1:]) + 2
            return dict(st_mode=stat.S_IFREG | mode, st_nlink=1, st_size=len(data), st_ino=ino, **times)

    def readdir(self, path, fh):
        with self.mutex:
            return [".", ".."] + list(self.files)

    def create(self, path, mode, fi=None):
        with self.mutex:
            self.files.setdefault(path[1:], [mode & 0o7777, bytearray()])
        return 0

    def open(self, path, flags):
        with self.mutex:
            self._file(path)
        return 0

    def read(self, path, size, offset, fh):
        with self.mutex:
            return bytes(self._file(path)[1][offset : offset + size])

    def write(self, path, data, offset, fh):
        if os.path.exists(self.trigger):
            self.forever.wait()
        with self.mutex:
            buf = self._file(path)[1]
            buf[offset : offset + len(data)] = data
        return len(data)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            buf = self._file(path)[1]
            del buf[length:]
            buf.extend(b"\0" * (length - len(buf)))

    def unlink(self, path):
        with self.mutex:
            self._file(path)
            del self.files[path[1:]]

    def chmod(self, path, mode):
        with self.mutex:
            self._file(path)[0] = mode & 0o7777

    def chown(self, path, uid, gid):
        pass

    def utimens(self, path, times=None):
        pass

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        return 0


def main():
    mountpoint, trigger = sys.argv[1], sys.argv[2]
    # nonempty: it is mounted over a directory that holds a file (libfuse 2 asks).
    FUSE(HoldFs(trigger), mountpoint, foreground=True, nothreads=False, allow_other=True, nonempty=True)


if __name__ == "__main__":
    main()
