"""Spreading clients' connections across gunicorn's workers: a worker leaves a new connection to one that holds fewer.

gunicorn's workers share one listening socket. A new connection wakes them all and the first to call accept() gets it,
whatever it holds already; a keep-alive client then stays with that worker. So 8 clients arriving together landed
4/4 on two workers of 4 threads, or 5/3 ... 8/0 at random: the clients beyond a worker's threads queued for one
while the other worker idled, and the throughput of a run changed by up to 2x with the split. Here each worker
publishes how many connections it holds (in memory the arbiter shares with the workers it forks), and one that holds
more than another live worker lets that one take the connection, waiting at most ACCEPT_DEFER_S for it to: a worker
that does not answer (stopped, swapping) delays a new connection that long, never refuses it. A thread that answered
a keep-alive client serves that client's next request itself when it comes at once (BalancedWorker.handle)."""
from __future__ import annotations

import multiprocessing
import select
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

#: How long a worker holding more connections than another leaves a new one to it before taking it itself (s)
ACCEPT_DEFER_S = 0.05
#: How long, meanwhile, each turn of its loop pauses before the next (in which it looks again) (s)
ACCEPT_POLL_S = 0.0005
#: A slot no live worker holds
ABSENT = -1
#: How long after its last word a worker is taken as not answering (s): its loop turns at least once a second (its
#: poll's timeout), so a worker silent longer is stopped, swapped out or stuck in a call holding the GIL, and no other
#: leaves it new connections (each waited ACCEPT_DEFER_S for it: 20 connections a second until the arbiter killed
#: it, up to the request timeout later)
SILENT_S = 2.5
#: How long a thread that answered a keep-alive client waits for that client's next request itself, when no other
#: request waits for a thread (s). A closed-loop client sends it within ~0.1 ms of the answer; the worker's loop took
#: it from there otherwise (poll, unregister, queue, wake a thread: one more thread waking for the GIL a request).
NEXT_REQUEST_S = 0.002


class ConnectionCounts:
    """Connections held per worker, one slot per worker, shared with the workers the arbiter forks. gunicorn's
    pre_fork and child_exit hooks (arbiter side) give a new worker a slot and free the slot of a worker gone; the
    worker writes its own count (BalancedWorker), and when it wrote it (`said`, time.monotonic: CLOCK_MONOTONIC, one
    clock for every process). Reads and writes of one slot are single aligned ints and doubles: no lock."""

    def __init__(self, slots: int) -> None:
        self.slots = multiprocessing.RawArray("i", [ABSENT] * slots)
        self.said = multiprocessing.RawArray("d", slots)

    def pre_fork(self, server: Any, worker: Any) -> None:
        """A slot no live worker holds (a reload runs old and new workers side by side); none left: unbalanced.
        The slot stays ABSENT until the worker accepts (BalancedWorker.run): its app takes seconds to build."""
        held = {getattr(w, "slot", None) for w in server.WORKERS.values()}
        worker.counts = self
        worker.slot = next((i for i in range(len(self.slots)) if i not in held), None)
        self.publish(worker.slot, ABSENT)

    def child_exit(self, _server: Any, worker: Any) -> None:
        self.publish(getattr(worker, "slot", None), ABSENT)

    def publish(self, slot: int | None, connections: int) -> None:
        if slot is not None:
            self.said[slot] = time.monotonic()
            self.slots[slot] = connections

    def fewer_elsewhere(self, slot: int | None, connections: int) -> bool:
        """Whether another live worker, one that spoke in the last SILENT_S, holds fewer connections than
        `connections`."""
        if slot is None:
            return False
        now = time.monotonic()
        return any(ABSENT < held < connections and now - self.said[other] < SILENT_S
                   for other, held in enumerate(self.slots) if other != slot)


class BalancedWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker that lets a worker holding fewer connections take a new one (the module's doc)."""

    counts: ConnectionCounts | None = None
    slot: int | None = None
    #: since when this worker has left waiting connections to another (turns of its loop in a row), and whether the
    #: listening socket was ready in the loop's current turn
    _deferred_since: float | None = None
    _listener_ready = False

    def _publish(self) -> None:
        if self.counts is not None and self.alive:  # a worker stopping has left its slot (handle_exit)
            self.counts.publish(self.slot, self.nr_conns)
            if not self.alive:  # SIGTERM's handler ran between the look and the write (a request's thread writes)
                self.counts.publish(self.slot, ABSENT)

    def run(self) -> None:
        self._publish()  # its app built: from now on it takes connections
        super().run()

    def accept(self, server: Any, listener: Any) -> None:
        """Called by the main loop when the listening socket is readable. While another worker holds fewer
        connections, this one leaves the connection to it: it returns without taking it (after ACCEPT_POLL_S, so that
        its loop, which serves its own clients meanwhile, does not spin), for turns of its loop in a row that together
        last at most ACCEPT_DEFER_S; then it takes it. Waiting in here instead stalled the loop: 13 ms at the 99th
        percentile of the open loop's accepts under load, 50 ms at most, its own clients' requests waiting too."""
        self._publish()
        self._listener_ready = True
        if self.counts is not None and self.counts.fewer_elsewhere(self.slot, self.nr_conns):
            now = time.monotonic()
            self._deferred_since = self._deferred_since or now
            if now - self._deferred_since < ACCEPT_DEFER_S:
                time.sleep(ACCEPT_POLL_S)
                return
        self._deferred_since = None
        if self.alive:  # not once SIGTERM came: the connection is left to a worker that goes on
            super().accept(server, listener)
            self._publish()

    def handle(self, conn: Any) -> tuple[bool, Any]:
        """A request of `conn` (in a thread of the pool), and then the next ones its client sends within
        NEXT_REQUEST_S of each answer, while no other request waits for a thread; then the connection goes back to
        the worker's loop (finish_request), as each did after one request."""
        while True:
            keepalive, conn = super().handle(conn)
            if not (keepalive and self._idle_pool() and _readable(conn.sock, NEXT_REQUEST_S)):
                return keepalive, conn

    def _idle_pool(self) -> bool:
        """No request waits for a thread of the pool, and this worker goes on (not stopping)."""
        waiting = getattr(self.tpool, "_work_queue", None)  # ThreadPoolExecutor's queue of submitted calls
        return self.alive and waiting is not None and waiting.empty() and not self.cfg.is_ssl

    def finish_request(self, fs: Any) -> None:
        super().finish_request(fs)  # a connection not kept alive is closed here
        self._publish()

    def murder_keepalived(self) -> None:
        """Called once a turn of the main loop, after the sockets that were ready were handled."""
        super().murder_keepalived()  # idle keep-alive connections past their timeout are closed here
        self._publish()
        if not self._listener_ready:  # a turn with no connection waiting: the next one waits afresh
            self._deferred_since = None
        self._listener_ready = False

    def handle_exit(self, sig: Any, frame: Any) -> None:
        """SIGTERM: this worker accepts no more (it finishes what it has), so no other should wait for it to."""
        super().handle_exit(sig, frame)
        if self.counts is not None:
            self.counts.publish(self.slot, ABSENT)


def _readable(sock: Any, timeout_s: float) -> bool:
    """Whether `sock` has something to read (a request, or the client's close) within `timeout_s`."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))
