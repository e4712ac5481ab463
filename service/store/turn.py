"""The writers' turn of a SQLite file between processes: an exclusive flock on a file beside the database, taken in
the order writers came to wait for it, not by whoever is quickest to ask again."""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import suppress

#: How long a writer waiting for its turn sleeps between looks (s): 0.5, 1, then 2 ms.
POLL_S = (0.0005, 0.001, 0.002)
#: How long a writer about to take the turn lets a writer that was waiting for it already take it first (s). The
#: writer ending a turn often needs the next at once (its process's next group of writes): it got it back before a
#: waiter polling every few ms could, turn after turn, and the other process's writes waited up to ~140 ms.
AFTER_WAITERS_S = 0.01
#: The descriptors holding a turn in this process (take until give): a forked child closes its copies (closed).
OPEN: set[int] = set()


def take(path: str, timeout_s: float) -> int:
    """The descriptor holding the turn of the lock file `path`, once the writers already waiting for it have had it
    (at most AFTER_WAITERS_S) and it is free. Past `timeout_s` of waiting it is returned without the turn: SQLite's
    own lock still decides who writes, and its BEGIN IMMEDIATE waits and fails as it would have. Closing it (give)
    frees the turn."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    OPEN.add(fd)
    _after_waiters(path)
    deadline, tries, waiting = time.monotonic() + timeout_s, 0, None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return fd
                if waiting is None:
                    waiting = _waiting(path)
                time.sleep(POLL_S[min(tries, len(POLL_S) - 1)])
                tries += 1
    finally:
        if waiting is not None:
            os.close(waiting)  # its shared lock goes with it: this writer waits no longer


def give(fd: int) -> None:
    """Close a turn's descriptor, which releases its flock; one a fork closed already (closed) is left alone."""
    if fd in OPEN:
        OPEN.discard(fd)
        os.close(fd)


def closed() -> None:
    """In a forked child: close the copies of the parent's turn descriptors. An flock belongs to the open file, which
    the copy shares, so a copy kept open held the parent's turn after the parent gave it back. Not flock(LOCK_UN):
    that would give the parent's turn away."""
    for fd in list(OPEN):
        with suppress(OSError):
            os.close(fd)
    OPEN.clear()


def _waiting(path: str) -> int | None:
    """Say that a writer waits for the turn: a shared flock on the turn's `-waiting` file, held while it waits (None:
    a writer about to take the turn is looking at that file this instant; the next look says it)."""
    fd = os.open(f"{path}-waiting", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _after_waiters(path: str) -> None:
    """While another writer says it waits (a shared flock on the `-waiting` file), let it take the turn first, for
    at most AFTER_WAITERS_S. A writer that waits stops saying so once it has the turn, so this one then waits behind
    it for that turn like any other."""
    fd = os.open(f"{path}-waiting", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        end = time.monotonic() + AFTER_WAITERS_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > end:
                    return
                time.sleep(POLL_S[0])
    finally:
        os.close(fd)
