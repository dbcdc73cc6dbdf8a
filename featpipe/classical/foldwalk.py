"""A walk along one parameter's values over cross-validation folds, in threads, without a wait
at every value.

The fast search (:mod:`featpipe.classical.fastsearch`) walks C upwards and needs the score of
every fold at one value before it knows whether to go on to the next. Fitting one value's folds
in parallel and then waiting for the slowest leaves threads idle: 5 folds on 2 threads take
three rounds per value, the last on one thread (a sixth of the threads' time lost; on 4
threads, three eighths). :func:`walk_folds` lets each fold fit its values in order (so its warm
start is ready) and gives a thread that has no fold of a decided value left a fold of the next
value. Should the walk stop before that value, the fit is cancelled through its ``cancel``
event, or its result dropped. The values evaluated and their scores are those of a walk that
waits at every value, as long as a fold's fit depends on nothing but the fold's earlier fits.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any


def walk_folds(
    values: Sequence,
    n_folds: int,
    fit: Callable[[int, Any, threading.Event], Any],
    go_on: Callable[[Any, list | None], bool],
    n_threads: int,
    *,
    done: Collection = (),
    ahead: int | None = 1,
) -> None:
    """Run ``fit(fold, value, cancel)`` for every fold at each of ``values``, in order, until
    ``go_on`` ends the walk.

    Parameters
    ----------
    values : sequence
        The values in walk order.
    n_folds : int
    fit : callable ``(fold, value, cancel) -> result``
        Runs in a worker thread; a fold's values are fitted one after the other, in order. It
        should return soon after ``cancel`` is set: its outcome (result or error) is then
        dropped.
    go_on : callable ``(value, results) -> bool``
        Called in the calling thread once per value, in walk order, as soon as all folds of
        the value are fitted, with their results in fold order (None for a value in ``done``).
        False ends the walk: later values are not started, and their running fits are
        cancelled.
    n_threads : int
        Worker threads.
    done : collection, default=()
        Values evaluated before: no fits.
    ahead : int or None, default=1
        How many values past the first undecided one a thread may start; None: any (for a walk
        that never stops).

    Examples
    --------
    >>> seen = []
    >>> walk_folds([1, 2, 3, 4], 3, lambda fold, value, cancel: fold * value,
    ...            lambda value, results: seen.append((value, results)) or value < 2, 2)
    >>> seen
    [(1, [0, 1, 2]), (2, [0, 2, 4])]
    """
    walk = _Walk(list(values), n_folds, go_on, done, ahead)
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        try:
            walk.run(pool, fit, n_threads)
        except BaseException:
            walk.cancel_running(0)
            raise


class _Walk:
    """The state of :func:`walk_folds`, kept by the calling thread only."""

    def __init__(self, values, n_folds, go_on, done, ahead):
        self.values, self.n_folds, self.go_on, self.done, self.ahead = (
            values, n_folds, go_on, done, ahead)
        todo = [k for k, value in enumerate(values) if value not in done]
        self.queues = [deque(todo) for _ in range(n_folds)]  # value indices each fold has left
        self.results: dict[int, dict[int, Any]] = {k: {} for k in todo}
        self.running: dict[Future, tuple[int, int, threading.Event]] = {}
        self.decided = 0  # values[:decided] were passed to go_on
        self.stopped = False

    def run(self, pool: ThreadPoolExecutor, fit, n_threads: int) -> None:
        while True:
            self.decide()
            while len(self.running) < n_threads and (task := self.next_task()) is not None:
                k, fold = task
                self.queues[fold].popleft()
                cancel = threading.Event()
                self.running[pool.submit(fit, fold, self.values[k], cancel)] = (fold, k, cancel)
            if not self.running:
                return
            finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in finished:
                fold, k, cancel = self.running.pop(future)
                if not cancel.is_set():
                    self.results[k][fold] = future.result()

    def next_task(self) -> tuple[int, int] | None:
        """(value index, fold) of the lowest value a free fold may start, lowest fold first."""
        if self.stopped:
            return None
        limit = len(self.values) if self.ahead is None else self.decided + 1 + self.ahead
        busy = {fold for fold, _, _ in self.running.values()}
        return min(((queue[0], fold) for fold, queue in enumerate(self.queues)
                    if fold not in busy and queue and queue[0] < limit), default=None)

    def decide(self) -> None:
        """Pass every value whose folds are all fitted to ``go_on``, in order."""
        while not self.stopped and self.decided < len(self.values):
            k = self.decided
            if self.values[k] in self.done:
                results = None
            elif len(self.results[k]) == self.n_folds:
                results = [self.results[k][fold] for fold in range(self.n_folds)]
            else:
                return
            self.decided += 1
            if not self.go_on(self.values[k], results):
                self.stopped = True
                self.cancel_running(self.decided)

    def cancel_running(self, first: int) -> None:
        """Cancel the running fits of values from index ``first`` on."""
        for _, k, cancel in self.running.values():
            if k >= first:
                cancel.set()
