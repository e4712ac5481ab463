"""The writers' turn of a SQLite file: an exclusive flock on a file beside it, which a writer holds from before its
BEGIN IMMEDIATE until after its commit (store/engine.py), so that writers of every process take turns."""
from __future__ import annotations

import _thread
import fcntl
import os
import threading
import time
from contextlib import suppress

#: The descriptors holding (or waiting for) a writers' turn in this process, from `take` until `give`: a forked
#: child closes its copies (see _forked).
OPEN: set[int] = set()
#: Lock files whose waiter a writer left behind past its deadline, still blocked in its flock (the turn held all that
#: time by another process): by count. While one is, the next writers of that file look every few ms (POLL_S) instead
#: of each leaving another thread and descriptor behind as long as the holder keeps the turn.
_STUCK: dict[str, int] = {}
_STUCK_LOCK = threading.Lock()
#: How long a writer looking for a turn (see _STUCK) sleeps between looks (s).
POLL_S = (0.0005, 0.001, 0.002)


def take(path: str, timeout: float) -> int:
    """The descriptor holding the writers' turn whose lock file is `path`. SQLite's own busy handler sleeps 1, 2, 5,
    10 … 100 ms between tries and is not woken when the lock frees, so of two processes writing back to back the one
    waiting kept losing the lock to the one that had it (waits of 0.5-1 s, the serving benchmark's p99). Here a turn
    held by another is waited for in the kernel (_Waiter), which hands it over as its holder gives it back. SQLite's
    lock still decides who writes: past `timeout` (s) of waiting (a writer outside this scheme, a stuck one) the
    transaction begins anyway, and its BEGIN IMMEDIATE waits and fails as it did before. `give` frees the turn."""
    fd = _opened(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    if _STUCK.get(path):
        return _looked_for(fd, timeout)
    if _Waiter(path, fd).taken(timeout):
        return fd
    return _opened(path)  # without the turn; the waiter closes its own descriptor once its flock returns


def _looked_for(fd: int, timeout: float) -> int:
    """`fd`, once its flock is taken or past `timeout` (s) without it."""
    deadline, tries = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        time.sleep(POLL_S[min(tries, len(POLL_S) - 1)])
        tries += 1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            continue
    return fd


def give(fd: int) -> None:
    """Close a turn's descriptor, which releases its flock; one a fork closed already (_forked) is left alone."""
    if fd in OPEN:
        OPEN.discard(fd)
        os.close(fd)


def _opened(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    OPEN.add(fd)
    return fd


class _Waiter:
    """A blocking flock of a turn's descriptor, in a thread of its own so that the writer waiting for it can stop
    at its deadline (a flock has none). The kernel wakes it as the holder gives the turn back: looking every 2 ms
    instead left the turn free for 1.4 ms on average at each hand-over between the serving benchmark's two workers
    (4-7 % of the time while the other waited for it; their creates held it 87 % of the time)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd, self.state = path, fd, "waiting"  # then "taken" or "failed" (flock refused: ENOLCK …),
        # or "abandoned" by a writer past its deadline
        self.changed = threading.Condition(threading.Lock())
        _thread.start_new_thread(self._run, ())  # not threading.Thread: its start waits for the thread to run

    def _run(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            outcome = "taken"
        except OSError:
            outcome = "failed"
        with self.changed:
            if self.state == "abandoned":  # the writer went on without it: what this took goes back at once
                give(self.fd)
                with _STUCK_LOCK:
                    if _STUCK.get(self.path, 0) > 1:
                        _STUCK[self.path] -= 1
                    else:
                        _STUCK.pop(self.path, None)
                return
            self.state = outcome
            if outcome == "failed":  # the writer goes on without the turn, on a descriptor of its own
                give(self.fd)
            self.changed.notify()

    def taken(self, timeout: float) -> bool:
        """Whether the turn came within `timeout` (s); if not, the descriptor is the waiter's to close."""
        with self.changed:
            self.changed.wait_for(lambda: self.state != "waiting", timeout)
            if self.state == "waiting":
                self.state = "abandoned"
                with _STUCK_LOCK:
                    _STUCK[self.path] = _STUCK.get(self.path, 0) + 1
            return self.state == "taken"


def _forked() -> None:
    """In a forked child: close the copies of the parent's turn descriptors (an flock belongs to the open file,
    which the copy shares: it kept the turn held after the parent gave it back, so every writer of the database
    waited for this process to exit or for the busy timeout). Not flock(LOCK_UN): that would give the parent's
    turn away. No waiter of the parent runs here."""
    for fd in list(OPEN):
        with suppress(OSError):
            os.close(fd)
    OPEN.clear()
    global _STUCK_LOCK  # noqa: PLW0603 - a lock the fork may have copied held
    _STUCK_LOCK = threading.Lock()
    _STUCK.clear()


os.register_at_fork(after_in_child=_forked)
