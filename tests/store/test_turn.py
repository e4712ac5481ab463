"""The writers' turn between processes (service/store/turn.py): a writer that ends its turn and asks again at once
lets a writer already waiting have it first; a writer says it waits only while it waits; a waiter that never comes
delays a writer a bounded time, never stops it. (flock locks belong to open files, so threads with descriptors of
their own stand for processes here.)"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.store import turn


def _held(path: str) -> bool:
    """Does anyone hold an flock on `path`? (tried from a descriptor of our own, as another process would)"""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "not within 10 s"
        time.sleep(0.001)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "live.db-writer")


def test_a_writer_asking_again_at_once_lets_the_writer_already_waiting_go_first(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(turn, "AFTER_WAITERS_S", 10.0)  # the waiting thread is not scheduled within 10 ms on a loaded
    order: list[str] = []                                  # machine; it takes the turn long before 10 s
    first = turn.take(path, 10)

    def waiter() -> None:
        fd = turn.take(path, 10)
        order.append("waiter")
        turn.give(fd)

    thread = threading.Thread(target=waiter)
    thread.start()
    _until(lambda: _held(f"{path}-waiting"))  # it said it waits
    turn.give(first)
    again = turn.take(path, 10)  # without the waiter's word it would have had the free lock back at once
    order.append("again")
    turn.give(again)
    thread.join(10)
    assert order == ["waiter", "again"]


def test_a_writer_says_it_waits_only_while_it_waits(path: str) -> None:
    first = turn.take(path, 10)
    got: list[int] = []
    thread = threading.Thread(target=lambda: got.append(turn.take(path, 10)))
    thread.start()
    _until(lambda: _held(f"{path}-waiting"))
    turn.give(first)
    thread.join(10)
    assert got and _held(path)  # the waiter has the turn
    assert not _held(f"{path}-waiting")  # and no longer says it waits
    turn.give(got[0])
    assert not _held(path)


def test_a_writer_that_took_the_turn_at_once_never_said_it_waits(path: str) -> None:
    fd = turn.take(path, 10)
    assert _held(path) and not _held(f"{path}-waiting")
    turn.give(fd)


def test_a_waiter_that_never_comes_for_the_turn_delays_a_writer_but_does_not_stop_it(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that said it waits and then stopped (a process frozen) holds its word until it closes it: a writer
    lets it go first for at most AFTER_WAITERS_S, then takes the free turn."""
    monkeypatch.setattr(turn, "AFTER_WAITERS_S", 0.05)
    stuck = os.open(f"{path}-waiting", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(stuck, fcntl.LOCK_SH)
    try:
        fd = turn.take(path, 10)
        assert _held(path)
        turn.give(fd)
    finally:
        os.close(stuck)


def test_giving_the_turn_frees_it_and_a_descriptor_given_twice_is_left_alone(path: str) -> None:
    fd = turn.take(path, 10)
    turn.give(fd)
    assert not _held(path) and fd not in turn.OPEN
    other = os.open(path, os.O_RDONLY)  # the number may be reused: give must not close what it no longer owns
    try:
        turn.give(fd)
        os.fstat(other)
    finally:
        os.close(other)
