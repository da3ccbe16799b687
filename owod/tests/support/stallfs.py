#!/usr/bin/env python3
"""A FUSE file system for tests: executables, each a copy of one real program, whose reads hang
for as long as the file system runs when the reader is a thread of process PID, and work for
everyone else (so the programs run, and PID's hash of them never finishes). PID's opens are
direct I/O: its hung reads hold no page of the page cache, which would stall an exec of the
same file by anyone else.

Usage: stallfs.py PID PROGRAM MOUNTPOINT NAME...  (runs in the foreground until killed)
"""
import errno
import stat
import sys
import threading
import time

try:  # Debian's python3-fusepy names the module after the package
    from fusepy import FUSE, FuseOSError, Operations, fuse_get_context
except ImportError:
    from fuse import FUSE, FuseOSError, Operations, fuse_get_context


def process_of(tid):
    try:
        with open(f"/proc/{tid}/status") as status:
            return int(next(l.split()[1] for l in status if l.startswith("Tgid:")))
    except (OSError, StopIteration):
        return None


class StallFs(Operations):
    def __init__(self, pid, data, names):
        self.pid = pid
        self.data = data
        self.names = set(names)
        self.now = time.time()
        self.forever = threading.Event()

    def getattr(self, path, fh=None):
        times = dict(st_atime=self.now, st_mtime=self.now, st_ctime=self.now)
        if path == "/":
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, **times)
        if path[1:] in self.names:
            return dict(st_mode=stat.S_IFREG | 0o755, st_nlink=1, st_size=len(self.data), **times)
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", ".."] + sorted(self.names)

    def hangs(self):
        return process_of(fuse_get_context()[2]) == self.pid

    def open(self, path, fi):
        fi.direct_io = self.hangs()
        return 0

    def read(self, path, size, offset, fi):
        if self.hangs():
            self.forever.wait()
        return self.data[offset : offset + size]


def main():
    pid, program, mountpoint, names = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    with open(program, "rb") as f:
        data = f.read()
    FUSE(StallFs(pid, data, names), mountpoint, foreground=True, nothreads=False, raw_fi=True)


if __name__ == "__main__":
    main()
