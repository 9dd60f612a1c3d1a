"""Where /proc and /sys live: `/` on a live host, a directory for a captured tree."""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel import tap

# What no kernel file is larger than (a root cgroup.procs of a few million PIDs): a
# captured tree's "meminfo" that is a huge file is refused, not read into memory.
MAX_READ_BYTES = 32 << 20
# Reading one file takes no longer than this (a file that keeps growing, a slow disk).
MAX_READ_SECONDS = 5.0
_MAX_SYMLINKS = 40  # as the kernel's path walk
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a directory"))

# Captured trees (Root(DIR) for a DIR that is not /): their real paths, so that a
# file opened under one is checked to be inside it (an absolute symlink in a tree
# leads to the live host's file of that name otherwise).
_TREES: dict[str, str] = {}


@functools.lru_cache(maxsize=64)
def _resolves_to_slash(path: str) -> bool:
    """Cached: join() asks on every path, and realpath costs a stat per component."""
    return os.path.realpath(path) == "/"


class NotKernelFile(OSError):
    """A file no kernel serves (its reason is the message)."""


def _kind_refusal(st: os.stat_result) -> str | None:
    if stat.S_ISREG(st.st_mode):
        if st.st_size > MAX_READ_BYTES:
            return f"{st.st_size} bytes: larger than any kernel file ({MAX_READ_BYTES >> 20} MiB)"
        return None
    kind = next((what for test, what in _KINDS if test(st.st_mode)), "not a regular file")
    return f"{kind}, not a kernel file"


def resolve_in_tree(base: str, kernel_path: str) -> str:
    """`kernel_path` resolved inside the tree at `base` (a real path) as if `base` were
    /: absolute symlinks start again at `base`, ".." stops there. The answer is a path
    inside `base` (what is missing stays as named); too many links raise ELOOP."""
    pending = [p for p in kernel_path.split("/") if p]
    current = base
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            if current != base:
                current = os.path.dirname(current)
            continue
        entry = current + "/" + name
        try:
            st = os.lstat(entry)
        except OSError:
            return "/".join([entry, *pending])  # missing: opening it says so
        if not stat.S_ISLNK(st.st_mode):
            current = entry
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), kernel_path)
        target = os.readlink(entry)
        pending = [p for p in target.split("/") if p] + pending
        if target.startswith("/"):
            current = base
    return current


def _tree_of(path: str) -> tuple[str, str] | None:
    """(the tree's real path, the kernel path) when `path` lies in a captured tree (the
    innermost, if trees nest): one look-up per component, however many trees."""
    found = None
    at = path.find("/", 1)
    while at > 0:
        base = _TREES.get(path[:at])
        if base is not None:
            found = base, path[at:]
        at = path.find("/", at + 1)
    return found


def _open(path: str) -> int:
    """The one open(2) of a kernel file (tests replace it to make files vanish)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)


def open_kernel_file(path: str) -> int:
    """A descriptor for reading a kernel file, or an OSError: never blocks on a FIFO
    (O_NONBLOCK), refuses what no kernel serves (a device, FIFO, socket, a file larger
    than MAX_READ_BYTES: NotKernelFile) and, in a captured tree, never leaves it."""
    tree = _tree_of(path) if _TREES else None
    try:
        fd = _open(path)
    except OSError as exc:
        if tree is None or exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        fd = -1  # an absolute link may lead to nothing on this host: look in the tree
    try:
        if fd >= 0 and tree is not None:
            real = os.readlink(f"/proc/self/fd/{fd}")
            if real != tree[0] and not real.startswith(tree[0] + "/"):
                os.close(fd)  # out of the tree through an absolute link
                fd = -1
        if fd < 0:
            assert tree is not None
            # What the link names inside the tree, as the captured host would read it.
            fd = os.open(resolve_in_tree(*tree), os.O_RDONLY | os.O_CLOEXEC
                         | os.O_NONBLOCK | os.O_NOFOLLOW)
        refusal = _kind_refusal(os.fstat(fd))
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    if refusal is not None:
        os.close(fd)
        raise NotKernelFile(errno.EINVAL, refusal)
    return fd


def _read_all(path: str) -> bytes:
    """The whole file through a bare descriptor: half the cost of open().read(), which
    matters when ranking reads a few files of each of thousands of groups. Bounded:
    at most MAX_READ_BYTES, for at most MAX_READ_SECONDS."""
    fd = open_kernel_file(path)
    try:
        data = os.read(fd, 65536)
        if data:
            more = [data]
            size = len(data)
            deadline = time.monotonic() + MAX_READ_SECONDS
            while chunk := os.read(fd, 65536):
                more.append(chunk)
                size += len(chunk)
                if size > MAX_READ_BYTES:
                    raise NotKernelFile(errno.EFBIG, f"larger than any kernel file "
                                                f"({MAX_READ_BYTES >> 20} MiB)")
                if time.monotonic() > deadline:
                    raise NotKernelFile(errno.ETIME, f"still not read to its end after "
                                                f"{MAX_READ_SECONDS:g} s")
            data = b"".join(more) if len(more) > 1 else data
        return data
    finally:
        os.close(fd)


def read_text_once(full: str, absent_ok: bool = True) -> str | None:
    """Open, read, close one file by its full path; failures become a KernelFileError
    naming it, absence None when `absent_ok`."""
    try:
        data = _read_all(full)
    except FileNotFoundError:
        if absent_ok:
            if tap.ACTIVE is not None:
                tap.ACTIVE.absent(full)
            return None
        raise KernelFileError(full, "missing") from None
    except PermissionError:
        raise KernelFileError(full, "permission denied") from None
    except NotKernelFile as exc:
        raise KernelFileError(full, exc.strerror) from None
    except OSError as exc:
        # ENOTDIR: a parent is no directory (absent); ESRCH: /proc/PID of a process
        # that exited after the open; ENODEV: a cgroup file after its rmdir.
        if absent_ok and exc.errno in (errno.ENOTDIR, errno.ESRCH, errno.ENODEV):
            if tap.ACTIVE is not None:
                tap.ACTIVE.absent(full)
            return None
        raise KernelFileError(full, f"unreadable ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise KernelFileError(full, "not valid UTF-8 text") from None
    if tap.ACTIVE is not None:  # a trace is written (it keeps this text) or replayed
        text = tap.ACTIVE.read(full, text)
    return text


@dataclass(frozen=True, slots=True)
class Root:
    """A filesystem root under which kernel paths are resolved."""

    path: str = "/"

    def __post_init__(self) -> None:
        if not self.is_live:
            _TREES.setdefault(self.path.rstrip("/"), os.path.realpath(self.path))

    @property
    def is_live(self) -> bool:
        return _resolves_to_slash(self.path)

    def _inside(self, kernel_path: str) -> str:
        """The path to use for `kernel_path`: in a captured tree, resolved inside it."""
        if self.is_live:
            return kernel_path
        return resolve_in_tree(_TREES[self.path.rstrip("/")], kernel_path)

    def join(self, kernel_path: str) -> str:
        """Map an absolute kernel path (e.g. /proc/vmstat) into this root."""
        if self.is_live:
            return kernel_path
        # os.path.join's result, for an absolute kernel path, at a third of its cost.
        return self.path.rstrip("/") + "/" + kernel_path.lstrip("/")

    def read_text(self, kernel_path: str) -> str:
        """Read a whole kernel file; failures become a KernelFileError naming the file."""
        text = self._read(kernel_path, absent_ok=False)
        assert text is not None
        return text

    def read_optional(self, kernel_path: str) -> str | None:
        """Read a file that may legitimately be absent (feature not built in, a group or
        process that went away): None then. One open, no exists() first, so a file that
        vanishes in between is "absent", not an error."""
        return self._read(kernel_path, absent_ok=True)

    def _read(self, kernel_path: str, absent_ok: bool) -> str | None:
        return read_text_once(self.join(kernel_path), absent_ok)

    def exists(self, kernel_path: str) -> bool:
        try:
            return os.path.exists(self._inside(kernel_path))
        except OSError:  # a symlink loop: nothing is there
            return False

    def is_loop(self, kernel_path: str) -> bool:
        """True for a name that is there but leads nowhere: a symlink loop (the kernel's
        sysfs has none; a hand-made tree may)."""
        full = self.join(kernel_path)
        try:
            os.stat(self._inside(kernel_path) if not self.is_live else full)
        except OSError as exc:
            return exc.errno == errno.ELOOP
        return False

    def listdir(self, kernel_path: str) -> list[str]:
        try:
            names = sorted(os.listdir(self._inside(kernel_path)))
        except OSError:
            names = []
        if tap.ACTIVE is not None:
            tap.ACTIVE.listing(self.join(kernel_path), names, dirs_only=False)
        return names

    def realpath(self, kernel_path: str) -> str:
        """Resolve symlinks inside the root; the answer is again a kernel path (in a
        captured tree, never one outside it: an absolute link starts at the tree)."""
        if self.is_live:
            return os.path.realpath(kernel_path)
        base = _TREES[self.path.rstrip("/")]
        try:
            full = resolve_in_tree(base, kernel_path)
        except OSError:
            return kernel_path  # a loop: the name as given
        return "/" + os.path.relpath(full, base).removeprefix(".")
