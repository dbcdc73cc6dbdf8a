"""A torch ``Sampler`` that follows a curriculum: mini-batches drawn from the easiest-first prefix
that the pacing function allows at each iteration, for any ``DataLoader``.

The fine-tuning loop's contract: it calls ``set_epoch(epoch)`` at the start of each epoch, runs
``ceil(len(sampler) / batch_size)`` steps, and adds ``log_state()`` to that epoch's metrics row.

Examples
--------
>>> import numpy as np
>>> from featpipe.curriculum.pacing import Pacing
>>> sampler = CurriculumSampler(np.arange(10), Pacing("linear", start=0.2, ramp=4), batch_size=2)
>>> sampler.set_epoch(0)
>>> batches = np.array(list(sampler)).reshape(-1, 2)
>>> [int(b.max()) < sampler.prefix_size(t) for t, b in enumerate(batches)]
[True, True, True, True, True]
>>> sampler.log_state()
{'pacing_fraction_first': 0.2, 'pacing_fraction': 1.0, 'prefix_size': 10}
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler

from featpipe.curriculum.ordering import order_examples
from featpipe.curriculum.pacing import Pacing
from featpipe.errors import FeatpipeError
from featpipe.params import Interval, validate

__all__ = ["CurriculumPlan", "CurriculumSampler"]

_COUNT = [Interval(int, 1, None)]


class CurriculumSampler(Sampler[int]):
    """Yield positions of a training set following ``order`` and ``pacing``.

    Step ``s`` of epoch ``e`` is iteration ``t = (e - first_epoch) * steps_per_epoch + s``; its ``batch_size``
    positions come from ``order[:pacing(t, n)]``, walked in a fresh seeded permutation (drawn
    again when used up, and whenever the prefix grows), so that no position outside the prefix
    is ever yielded and every position inside it is yielded before any repeats. Once the prefix
    is the whole set an epoch is an ordinary shuffled pass. Each epoch is drawn from
    ``(seed, epoch)`` alone: resuming at an epoch gives the same batches.

    Parameters
    ----------
    order : array-like of int
        The positions ``0..n-1`` in curriculum order (easiest first), e.g. from
        :func:`~featpipe.curriculum.ordering.order_examples`.
    pacing : Pacing
        Iteration -> prefix size.
    batch_size : int
        The DataLoader's batch size (the sampler counts iterations in batches).
    num_samples : int, default=None
        Positions per epoch; None: ``n`` (each epoch has as many steps as ordinary training).
    seed : int, default=0
    first_epoch : int, default=0
        The number of the first epoch: 0 as torch's ``DistributedSampler`` counts, 1 as
        featpipe's fine-tuning loop does.
    """

    def __init__(self, order, pacing: Pacing, batch_size: int, *, num_samples: int | None = None,
                 seed: int = 0, first_epoch: int = 0):
        order = np.asarray(order, dtype=np.int64)
        if order.ndim != 1 or not len(order) or not np.array_equal(np.sort(order),
                                                                     np.arange(len(order))):
            raise FeatpipeError("`order` must be a permutation of the positions 0..n-1")
        validate({"batch_size": batch_size, "num_samples": num_samples, "seed": seed,
                  "pacing": pacing, "first_epoch": first_epoch},
                 {"batch_size": _COUNT, "num_samples": [*_COUNT, None], "seed": [int],
                  "pacing": [Pacing], "first_epoch": [Interval(int, 0, None)]})
        self.order, self.pacing, self.batch_size, self.seed = order, pacing, batch_size, seed
        self.num_samples = len(order) if num_samples is None else num_samples
        self.first_epoch = self.epoch = first_epoch

    def __len__(self) -> int:
        return self.num_samples

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: its iterations and its random draws."""
        validate({"epoch": epoch}, {"epoch": [Interval(int, self.first_epoch, None)]})
        self.epoch = epoch

    def _first_iteration(self) -> int:
        return (self.epoch - self.first_epoch) * self.steps_per_epoch

    def prefix_size(self, iteration: int) -> int:
        return self.pacing(iteration, len(self.order))

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        first = self._first_iteration()
        queue, size = np.empty(0, dtype=np.int64), 0
        for step in range(self.steps_per_epoch):
            if self.prefix_size(first + step) != size:
                size = self.prefix_size(first + step)
                queue = rng.permutation(self.order[:size])
            wanted = min(self.batch_size, self.num_samples - step * self.batch_size)
            batch = []
            while wanted:
                if not len(queue):
                    queue = rng.permutation(self.order[:size])
                batch.append(queue[:wanted])
                wanted -= len(batch[-1])
                queue = queue[len(batch[-1]):]
            yield from np.concatenate(batch).tolist()

    def log_state(self) -> dict[str, float]:
        """The pacing of the current epoch: the fraction of the training set in use at its first
        and at its last step, and the prefix size at its last step."""
        first = self._first_iteration()
        last = self.prefix_size(first + self.steps_per_epoch - 1)
        return {"pacing_fraction_first": self.prefix_size(first) / len(self.order),
                "pacing_fraction": last / len(self.order), "prefix_size": last}


@dataclass(frozen=True)
class CurriculumPlan:
    """Scores, ordering and pacing for a training set: called as ``plan(train_labels, seed)``
    it builds the :class:`CurriculumSampler` (the fine-tuning loop's ``train_sampler`` factory).

    Parameters
    ----------
    scores : ndarray of shape (n_train,)
        Easiness of each training position (ignored by the ``random`` ordering).
    pacing : Pacing
    batch_size : int
    ordering : {"curriculum", "anti", "random"}, default="curriculum"
    balanced : bool, default=True
        Class-balanced prefixes.
    num_samples : int, default=None
        Positions per epoch (None: ``n_train``).
    first_epoch : int, default=1
        The number of the first epoch (featpipe's fine-tuning loop counts from 1).

    Examples
    --------
    >>> plan = CurriculumPlan(np.array([0.9, 0.1, 0.5, 0.4]), Pacing("constant"), batch_size=2)
    >>> sampler = plan(np.array([0, 0, 1, 1]), seed=0)
    >>> sampler.order.tolist(), len(sampler)
    ([0, 2, 3, 1], 4)
    """

    scores: np.ndarray
    pacing: Pacing
    batch_size: int
    ordering: str = "curriculum"
    balanced: bool = True
    num_samples: int | None = None
    first_epoch: int = 1

    def __call__(self, train_labels, seed: int = 0) -> CurriculumSampler:
        train_labels = np.asarray(train_labels)
        if len(train_labels) != len(self.scores):
            raise FeatpipeError(f"the curriculum scores {len(self.scores)} images but the "
                                f"training split has {len(train_labels)}")
        order = order_examples(self.scores, train_labels, ordering=self.ordering,
                               balanced=self.balanced, seed=seed)
        return CurriculumSampler(order, self.pacing, self.batch_size,
                                 num_samples=self.num_samples, seed=seed,
                                 first_epoch=self.first_epoch)
