"""SQLite's WAL checkpointed into the database file from a thread of its own, after the commits, not inside them."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from weakref import WeakKeyDictionary

from sqlalchemy import Engine

#: How often at most a process asks for a checkpoint of an engine it writes to (s).
CHECKPOINT_EVERY_S = 0.25
#: WAL frames (pages) past which a checkpoint lets the WAL start over (16 MB of 4 KiB pages). Not SQLite's 1,000:
#: served creates wrote that many in ~0.3 s, so the pass with the writers' turn held (2-15 ms, every writer of the
#: file waiting) ran ~3 times a second.
RESTART_AFTER_FRAMES = 4000


class Checkpointer:
    """Checkpoints SQLite's WAL into the database file from a thread of its own, after the commits, not inside them.

    SQLite's automatic checkpoint runs in the commit that fills the WAL past 1,000 pages: that request copied 4 MB
    into the database and waited for two more fsyncs (65-160 ms against 15 ms for a commit) while it held the write
    lock, and the other writer waited with it. A PASSIVE checkpoint waits for no reader or writer, so one here, a
    few times a second, copies the WAL while writers go on (see checkpoint() for the short pass they wait for).
    Durability is unchanged: a commit is durable once its WAL frames are synced (synchronous=FULL); a checkpoint
    only copies committed pages into the database.
    `turn(engine)`: the writers' turn of the engine's file (store/engine.py), held for checkpoint()'s second pass."""

    def __init__(self, turn: Callable[[Engine], AbstractContextManager[None]]) -> None:
        self._turn = turn
        self._due: set[Engine] = set()
        self._last: WeakKeyDictionary[Engine, float] = WeakKeyDictionary()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forked)

    def wrote(self, engine: Engine) -> None:
        """`engine` committed a write: checkpoint it soon, unless that was asked less than CHECKPOINT_EVERY_S ago."""
        now = time.monotonic()
        if now - self._last.get(engine, 0.0) < CHECKPOINT_EVERY_S:
            return
        self._last[engine] = now
        with self._wake:
            self._due.add(engine)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kfhir-checkpoint", daemon=True)
                self._thread.start()
            self._wake.notify()

    def checkpoint(self, engine: Engine) -> None:
        """Checkpoint a SQLite engine's WAL, outside any transaction; a failure waits for the next one.

        The WAL starts over from its beginning (instead of growing) only when a writer begins with every frame in it
        copied. Writers that commit while a checkpoint runs leave frames it did not copy, so once the WAL holds
        RESTART_AFTER_FRAMES a second pass copies those few with the writers' turn held: the next writer finds the
        WAL all copied and starts it over. (Under back-to-back writes it grew past 50 MB without that pass.)"""
        try:
            if passive(engine) >= RESTART_AFTER_FRAMES:
                with self._turn(engine):
                    passive(engine)
        except Exception:  # noqa: BLE001, S110 - e.g. a database being removed; the next commit asks again
            pass

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due:
                    self._wake.wait()
                engine = self._due.pop()
            self.checkpoint(engine)
            del engine  # an engine nobody else holds may go

    def _forked(self) -> None:
        self._due, self._thread, self._wake = set(), None, threading.Condition()


def passive(engine: Engine) -> int:
    """A PASSIVE checkpoint (it waits for no reader or writer); how many frames the WAL holds."""
    raw = engine.raw_connection()
    try:
        row = raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # type: ignore[union-attr]
    finally:
        raw.close()
    return int(row[1]) if row else 0
