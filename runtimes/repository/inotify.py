"""A minimal inotify binding (ctypes, Linux) that wakes the repository scan at once.

It also tells which folders arrived by rename: a renamed folder is complete by contract
and is loaded without waiting for it to settle. Where inotify is unavailable (another OS,
some network file systems) the controller falls back to polling.
"""

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from pathlib import Path

logger = logging.getLogger("v2serve.repository")

_EVENTS = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
IN_MOVED_TO = 0x80
_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000
_HEADER = struct.Struct("iIII")


class Inotify:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self._libc.inotify_init1(_NONBLOCK_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._paths: dict[int, Path] = {}
        self.renamed_in: set[Path] = set()
        self.woken = asyncio.Event()

    def watch(self, path: Path) -> None:
        descriptor = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _EVENTS)
        if descriptor >= 0:
            self._paths[descriptor] = path

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.fd, self._read)

    def _read(self) -> None:
        try:
            buffer = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _HEADER.size <= len(buffer):
            descriptor, mask, _, length = _HEADER.unpack_from(buffer, offset)
            offset += _HEADER.size
            name = buffer[offset : offset + length].rstrip(b"\0").decode(errors="replace")
            offset += length
            folder = self._paths.get(descriptor)
            if folder is not None and mask & IN_MOVED_TO and name:
                self.renamed_in.add(folder / name)
        self.woken.set()

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.fd)
        os.close(self.fd)


def open_inotify() -> Inotify | None:
    try:
        return Inotify()
    except (OSError, AttributeError, TypeError) as exc:
        logger.warning("inotify unavailable (%s); polling the repository instead", exc)
        return None
