"""The background writer thread (disk I/O overlaps compute) and the progress bar of extraction."""

from __future__ import annotations

import contextlib
import queue
import threading

from featpipe.store.writer import StoreWriter


class _BackgroundWriter:
    """Writes batches on a thread so disk I/O overlaps compute; re-raises its errors here."""

    def __init__(self, writer: StoreWriter, depth: int = 4):
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "_BackgroundWriter":
        self._thread.start()
        return self

    def put(self, positions, features, failures) -> None:
        self._raise_if_failed()
        self._queue.put((positions, features, failures))

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_batch(*item)
                except BaseException as exc:  # surfaced in the main thread
                    self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def __exit__(self, *exc_info) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_info[0] is not None or self._error is not None:
            self._writer.close()
        if exc_info[0] is None:
            self._raise_if_failed()


@contextlib.contextmanager
def _progress_bar(enabled: bool, batches: list[list[int]]):
    from tqdm.auto import tqdm

    total = sum(len(b) for b in batches)
    with tqdm(total=total, unit="img", disable=not enabled, dynamic_ncols=True,
              desc="extract") as bar:
        yield bar

