"""Only root may be able to change what a root daemon that kills processes is told to do.

The rule, applied when zoomd runs as root (euid 0), to the configuration file, its
drop-in directory and every drop-in in it:

- the file (or directory) must be owned by root and not writable by group or others;
- so must every directory in which a name on the way to it is looked up, following
  symlinks component by component as the kernel does (`link/..` is the parent of
  where the link leads, not the directory holding the link): a symlink is only as
  safe as the directory that holds it and the directories its target is reached
  through. A directory writable by others is accepted only when it is sticky (like
  /tmp) and the entry looked up in it is owned by root, because then nobody else can
  rename or replace that entry.

As an unprivileged user the rule is not applied: such a zoomd can only act on what
that user may act on anyway, and demanding root ownership of its configuration
would make no sense. The configuration shipped inside the package is exempt too: it
is exactly as trustworthy as the code beside it that reads it.
"""

from __future__ import annotations

import os
import stat

from zoomd.errors import ConfigError

_MAX_SYMLINKS = 40  # as the kernel's path walk


def _who_may_write(st: os.stat_result) -> str | None:
    """Who other than root may change this inode, or None when nobody may."""
    who = []
    if st.st_uid != 0:
        who.append(f"its owner uid {st.st_uid}")
    if st.st_mode & stat.S_IWGRP:
        who.append(f"group {st.st_gid}")
    if st.st_mode & stat.S_IWOTH:
        who.append("everyone")
    return " and ".join(who) or None


def _insecure(path: str) -> str | None:
    """Why `path` (and the way to it) may be changed by someone other than root."""
    # Not os.path.abspath: it folds `link/..` away lexically, while the kernel goes
    # through the link first and then to the parent of wherever it led.
    full = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    pending = [p for p in full.split("/") if p]
    current = "/"
    links = 0
    while True:
        try:
            dir_st = os.stat(current)
        except FileNotFoundError:
            return None  # nothing there to refuse: reading it says "no such file"
        except OSError as exc:
            return f"{current}: {exc.strerror or exc}"
        if not pending:
            who = _who_may_write(dir_st)
            kind = "directory" if stat.S_ISDIR(dir_st.st_mode) else "file"
            mode = f"{stat.S_IMODE(dir_st.st_mode):04o}"
            return None if who is None else \
                f"{current} ({kind}, mode {mode}) may be changed by {who}"
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            # `current` holds no symlink (each was expanded into `pending`), so its
            # lexical parent is the one the kernel reaches.
            current = os.path.dirname(current)
            continue
        entry = os.path.join(current, name)
        try:
            entry_st = os.lstat(entry)
        except (FileNotFoundError, NotADirectoryError):
            return None  # as above
        except OSError as exc:
            return f"{entry}: {exc.strerror or exc}"
        who = _who_may_write(dir_st)
        # A sticky directory (/tmp) lets nobody but the owner rename or remove an entry.
        sticky_guarded = (dir_st.st_uid == 0 and dir_st.st_mode & stat.S_ISVTX
                          and entry_st.st_uid == 0)
        if who is not None and not sticky_guarded:
            return (f"{entry} is in {current} (mode {stat.S_IMODE(dir_st.st_mode):04o}), "
                    f"where {who} may replace it")
        if stat.S_ISLNK(entry_st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                return f"{path}: too many levels of symbolic links"
            try:
                target = os.readlink(entry)
            except OSError as exc:
                return f"{entry}: {exc.strerror or exc}"
            pending = [p for p in target.split("/") if p] + pending
            if target.startswith("/"):
                current = "/"
            continue
        current = entry


def check_config_files(paths: list[str], directories: list[str] = ()) -> None:
    """Raise ConfigError (one line) unless only root may change `paths` and `directories`."""
    for path in [*directories, *paths]:
        reason = _insecure(path)
        if reason is not None:
            raise ConfigError(path, None, f"refusing an unsafe configuration: {reason}; "
                                          "only root may be able to change it")


def must_check(euid: int | None = None) -> bool:
    """The rule applies to a zoomd running as root."""
    return (os.geteuid() if euid is None else euid) == 0


def program_refusal(program: str, as_root: bool | None = None) -> str | None:
    """Why a hook's program cannot run, or is one that root must not run, or None.

    It must exist, be a regular file and have an execute bit; run as root, the program
    and every directory on the way to it must be changeable by root alone, as for the
    configuration (a hook runs as root: whoever may replace the program runs as root).
    """
    try:
        st = os.stat(program)
    except OSError as exc:
        return f"{program}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{program}: not a regular file"
    if not st.st_mode & 0o111:
        return f"{program}: not executable"
    if must_check() if as_root is None else as_root:
        reason = _insecure(program)
        if reason is not None:
            return (f"refusing an unsafe hook program: {reason}; only root may be able "
                    "to change what root runs")
    return None
