"""Connect to a Dask cluster: a scheduler address (``tcp://host:8786``) or ``local:N`` (a
:class:`distributed.LocalCluster` of N single-threaded worker processes on this machine).

Dask is an optional dependency (``pip install 'featpipe[dask]'``); it is imported here only.

Examples
--------
>>> parse_address("local:2")
('local', 2)
>>> parse_address("tcp://10.0.0.5:8786")
('tcp://10.0.0.5:8786', None)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from featpipe.errors import FeatpipeError, UsageError

_LOCAL = re.compile(r"^local:(\d+)$")
#: Seconds to wait for a remote scheduler before giving up with one line.
CONNECT_TIMEOUT = 10


def parse_address(address: str) -> tuple[str, int | None]:
    """``local:N`` -> ("local", N); anything else is a scheduler address, returned as is."""
    match = _LOCAL.match(address.strip())
    if match is None:
        if address.strip().startswith("local"):
            raise UsageError(f"`dask` {address!r}: write local:N with N >= 1 worker processes")
        return address.strip(), None
    if int(match[1]) < 1:
        raise UsageError(f"`dask` {address!r}: local:N needs N >= 1 worker processes")
    return "local", int(match[1])


def _distributed():
    try:
        import distributed
    except ImportError:
        raise FeatpipeError("`dask` needs Dask: pip install 'featpipe[dask]' (dask[distributed])"
                            ) from None
    return distributed


@contextlib.contextmanager
def connect(address: str) -> Iterator:
    """A :class:`distributed.Client` for ``address`` (closed, with a local cluster, on exit).

    A local cluster's workers have one thread each (BLAS and torch single-threaded, as Dask
    sets for its workers): N workers use N cores without oversubscribing them.
    """
    distributed = _distributed()
    where, n_workers = parse_address(address)
    if n_workers is not None:
        with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                      processes=True, dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(where, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise FeatpipeError(f"cannot reach the Dask scheduler at {where} ({exc})") from None
    with client:
        yield client


def n_workers(client) -> int:
    """Workers the scheduler knows now (at least 1, to size work before they join)."""
    return max(1, len(client.nthreads()))
