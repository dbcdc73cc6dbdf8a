"""What a benchmark measures besides its results: wall time, machine load and peak memory.

The machine is shared, so the load average is recorded with every timed arm. Peak memory of a
piece of work is measured in its own process: :func:`peak_rss_mib` runs a command and reads the
child's own ``ru_maxrss`` from ``os.wait4``; :func:`python_peak_rss_mib` runs Python code and
reads its peak when the code ends, before the interpreter's teardown (which, in a process that
has imported torch, pages in some 190 MiB of shared-library pages: a process that only imports
what ``featpipe fit`` imports holds 981 MiB and peaks at 1,168 MiB while exiting). A process
that wants its own figures uses :func:`own_peak_rss_mib` and :func:`current_rss_mib`.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

MIB = 1024.0 ** 2


def load_average() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages (NaN where the system does not tell)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return float("nan"), float("nan"), float("nan")
    return one, five, fifteen


def format_load(load: Sequence[float] | None = None, digits: int = 2) -> str:
    """``(1.234, 0.5, 0.25)`` -> ``"1.23 0.50 0.25"`` (as ``/proc/loadavg`` writes them); the
    load average now when ``load`` is None."""
    return " ".join(f"{value:.{digits}f}" for value in (load or load_average()))


@dataclass(frozen=True)
class Measured:
    """What a call returned, its wall seconds and the load average just before it."""

    value: Any
    seconds: float
    load: tuple[float, float, float]


def measure(call: Callable[..., Any], *args, **kwargs) -> Measured:
    """Run ``call(*args, **kwargs)``; record the load before it and its wall time."""
    load = load_average()
    started = time.perf_counter()
    value = call(*args, **kwargs)
    return Measured(value, time.perf_counter() - started, load)


def peak_rss_mib(command: Sequence[str]) -> tuple[float, float, int, str]:
    """Run ``command``; its own peak RSS (MiB, from ``wait4``), wall seconds, exit code and
    last stderr line."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    # ru_maxrss is in KiB on Linux
    return usage.ru_maxrss / 1024.0, seconds, process.returncode, lines[-1] if lines else ""


def python_peak_rss_mib(code: str, args: Sequence[str] = ()) -> tuple[float, float, int, str]:
    """:func:`peak_rss_mib` of ``python -c code *args``, the peak read when ``code`` ends
    (returns, raises or calls ``sys.exit``), before the interpreter tears down."""
    with tempfile.TemporaryDirectory() as folder:
        peak = os.path.join(folder, "peak")
        wrapped = (f"try:\n{textwrap.indent(code, '    ')}\nfinally:\n"
                   f"    import resource as _resource\n"
                   f"    with open({peak!r}, 'w') as _handle:\n"
                   f"        _handle.write(str(_resource.getrusage(_resource.RUSAGE_SELF)"
                   f".ru_maxrss))\n")
        whole, seconds, code_rc, err = peak_rss_mib([sys.executable, "-c", wrapped, *args])
        if not os.path.exists(peak):  # killed (out of memory?): wait4's peak is all there is
            return whole, seconds, code_rc, err
        with open(peak) as handle:  # ru_maxrss is in KiB on Linux
            return int(handle.read()) / 1024.0, seconds, code_rc, err


def own_peak_rss_mib(children: bool = False) -> float:
    """This process's peak RSS in MiB (with ``children``: the largest waited-for child's)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def current_rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB
