"""Fault-injection helpers shared by the test modules (issue 14).

:func:`kill_and_resume` is the one kill-at-a-random-moment harness: it runs a command, SIGKILLs
it after a seeded random delay, re-runs the same command until it succeeds, and returns what
happened. A new long-running command joins the suite with a reference run (:func:`timed_run`),
a comparison of its outputs, and a test parametrised over ``range(FAULT_RUNS)`` seeds (see
``tests/test_faults.py``: extraction and fit today; fine-tuning and sharded extraction plug in
the same way).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

#: Random kill points per command; CI keeps it small, FEATPIPE_FAULT_RUNS=50 for a campaign.
FAULT_RUNS = int(os.environ.get("FEATPIPE_FAULT_RUNS", "1"))
#: A JSON-lines file receiving every :class:`KillReport` (for RELIABILITY.md's counts).
FAULT_LOG = os.environ.get("FEATPIPE_FAULT_LOG")


def featpipe_cmd(*argv) -> list[str]:
    """The command line running ``featpipe ARGV`` in a fresh interpreter."""
    return [sys.executable, "-m", "featpipe.cli", *map(str, argv)]


@dataclass
class Reference:
    """An uninterrupted run: its wall time, and from when the clock of the kills starts."""

    seconds: float
    work_seconds: float


def timed_run(cmd: list[str], *, work_starts: Path | None = None) -> Reference:
    """Run ``cmd`` to completion (it must succeed); ``work_starts`` is a file whose
    appearance marks the start of the interesting part (e.g. the ``.partial`` store)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work_started = _wait_for(proc, work_starts) if work_starts is not None else started
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    finished = time.perf_counter()
    return Reference(finished - started, finished - work_started)


@dataclass
class KillReport:
    """What one :func:`kill_and_resume` did: the delay, whether the kill came before the run
    ended and whether it came mid-work (``work_starts`` existed), the re-runs' exit codes."""

    delay: float
    killed: bool
    mid_work: bool
    resumes: list[int] = field(default_factory=list)


def kill_and_resume(cmd: list[str], reference: Reference, seed: int, *,
                    work_starts: Path | None = None, output: Path | None = None,
                    max_resumes: int = 3) -> KillReport:
    """SIGKILL ``cmd`` at a seeded random moment, then re-run it until it exits 0.

    The delay is drawn uniformly in ``[0, reference.work_seconds)`` after ``work_starts``
    appears (after the start without it). A run that finished before the kill is not
    re-run, nor one killed after its ``output`` (written atomically) appeared: its work was
    done (the caller checks the result either way).
    """
    delay = float(np.random.default_rng(seed).uniform(0, reference.work_seconds))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if work_starts is not None:
        _wait_for(proc, work_starts)
    mid_work = False
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        mid_work = work_starts is None or work_starts.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    report = KillReport(delay=delay, killed=proc.returncode == -signal.SIGKILL,
                        mid_work=proc.returncode == -signal.SIGKILL and mid_work)
    if not report.killed:
        assert proc.returncode == 0, f"{cmd} failed without a kill"
        return _logged(cmd, report)
    if output is not None and output.exists():
        return _logged(cmd, report)
    for _ in range(max_resumes):
        resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        report.resumes.append(resumed.returncode)
        if resumed.returncode == 0:
            return _logged(cmd, report)
        assert "Traceback" not in resumed.stderr, resumed.stderr
    raise AssertionError(f"{cmd} did not succeed after the kill: {report}; {resumed.stderr}")


def _logged(cmd: list[str], report: KillReport) -> KillReport:
    if FAULT_LOG:
        with open(FAULT_LOG, "a") as log:
            log.write(json.dumps({"command": cmd[3], **asdict(report)}) + "\n")
    return report


def _wait_for(proc: subprocess.Popen, path: Path, timeout: float = 300) -> float:
    """Poll until ``path`` exists or ``proc`` ended; the moment it was seen."""
    deadline = time.perf_counter() + timeout
    while not path.exists() and proc.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.005)
    return time.perf_counter()


def assert_same_store(a: Path, b: Path) -> None:
    """Two stores hold the same rows, features, status, labels and failures."""
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert sorted(fa["features"]) == sorted(fb["features"])
        for name in fb["features"]:
            np.testing.assert_array_equal(fa["features"][name][()], fb["features"][name][()])
        for name in ("status", "labels", "index"):
            np.testing.assert_array_equal(fa[name][()], fb[name][()])
        assert fa["ids"].asstr()[()].tolist() == fb["ids"].asstr()[()].tolist()
        assert (fa["failures/reason"].asstr()[()].tolist()
                == fb["failures/reason"].asstr()[()].tolist())
        assert bool(fa.attrs["complete"]) and bool(fb.attrs["complete"])
