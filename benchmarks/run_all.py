"""Run the whole benchmark suite and assemble ``suite.md``.

    python -m benchmarks.run_all [--quick] [--datasets tuxpaint,openclipart,fashion-mnist]
        [--out DIR] [--only compare_layers,few_shot]

1. Prepares every dataset whose ``benchmarks/data/<name>/manifest.csv`` is missing
   (``benchmarks.datasets.prepare``); a dataset that cannot be prepared is skipped with the
   reason (which package to install) in the log and in ``suite.md``.
2. Runs each comparison script's ``main(argv)`` in turn: ``bench_extract`` (issue 2),
   ``bench_fit`` (issue 3), ``bench_scaleout`` (issue 13) and ``peers`` (comparison 5; with
   ``.venv-bench/bin/python`` when that environment exists) when those modules exist, and
   comparisons 1, 2, 3, 4 and 6. A failing script is reported and the others still run.
3. Writes ``<out>/suite.md``: what ran, then every script's page (tables and plots). A
   hand-written discussion between the ``<!-- discussion -->`` markers of an existing
   ``suite.md`` is kept.

``make bench-quick`` = ``--quick`` (tiny subsets, results under ``benchmarks/out/quick``);
``make bench`` = the full runs into ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from benchmarks import harness

SUITE = "suite.md"
DISCUSSION_START, DISCUSSION_END = "<!-- discussion -->", "<!-- /discussion -->"


@dataclass(frozen=True)
class Script:
    """One benchmark module and the page it writes (``<out>/<page>``)."""

    module: str
    page: str
    title: str
    ours: bool = True  # takes --datasets (harness.parser); every script takes --out, --quick
    venv: str | None = None  # run with this environment's python when it exists


SCRIPTS = (
    Script("bench_extract", "extract.md", "Extraction overhead (issue 2)", ours=False),
    Script("compare_layers", "compare_layers.md", "1. Layer by layer"),
    Script("compare_recipes", "compare_recipes.md", "2. Last layer vs full network"),
    Script("few_shot", "few_shot.md", "3. Few-shot"),
    Script("compare_classifiers", "compare_classifiers.md", "4. Classifiers and reducers"),
    Script("bench_fit", "fit.md", "Classical stage cost (issue 3)", ours=False),
    Script("bench_scaleout", "scaleout.md", "Scale-out on Dask (issue 13)", ours=False),
    Script("peers", "peers.md", "5. Peers", ours=False, venv=".venv-bench"),
    Script("cost", "cost.md", "6. Cost"),
)


@dataclass
class Outcome:
    script: Script
    status: str
    seconds: float = 0.0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = harness.base_parser(__doc__.splitlines()[0], quick_help="every script on tiny subsets")
    harness.add_datasets(p)
    p.add_argument("--only", default=None, help="comma-separated script modules to run")
    p.add_argument("--assemble-only", action="store_true",
                   help="run nothing: rebuild suite.md from the pages already in --out")
    return harness.parse_args(p, argv)


def prepare_datasets(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Prepare what is missing; returns (usable datasets, {skipped dataset: reason})."""
    from benchmarks.datasets import prepare

    ready, skipped = [], {}
    for name in names:
        manifest = harness.DATA_DIR / name / "manifest.csv"
        if not manifest.exists():
            harness.log(f"preparing {name} ...")
            try:
                prepare(name, harness.DATA_DIR)
            except Exception as error:  # noqa: BLE001 - any failure only skips this dataset
                skipped[name] = f"{type(error).__name__}: {error}"
                harness.log(f"skipping {name}: {skipped[name]}")
                continue
        ready.append(name)
    return ready, skipped


def script_argv(script: Script, args, datasets: Sequence[str]) -> list[str]:
    argv = ["--out", str(args.out)] + (["--quick"] if args.quick else [])
    return argv + (["--datasets", ",".join(datasets)] if script.ours else [])


def run_script(script: Script, argv: list[str]) -> Outcome:
    """Import ``benchmarks.<module>`` (absent -> skipped) and call its ``main(argv)``; a
    script with its own environment (peers) runs as a subprocess of that python."""
    python = harness.REPO / script.venv / "bin" / "python" if script.venv else None
    if python is not None and python.exists() and (harness.REPO / "benchmarks" /
                                                   f"{script.module}.py").exists():
        return run_subprocess(script, python, argv)
    try:
        module = importlib.import_module(f"benchmarks.{script.module}")
    except ModuleNotFoundError as error:
        if error.name != f"benchmarks.{script.module}":
            return Outcome(script, f"failed to import: {error}")
        return Outcome(script, "skipped: module not present")
    harness.log(f"=== python -m benchmarks.{script.module} {' '.join(argv)}")
    started = time.perf_counter()
    try:
        code = module.main(argv)
        status = "ok" if not code else f"failed (exit {code})"
    except SystemExit as exit_:
        status = "ok" if not exit_.code else f"failed (exit {exit_.code})"
    except Exception as error:  # noqa: BLE001 - report it and go on with the next script
        traceback.print_exc()
        status = f"failed: {type(error).__name__}: {error}"
    return Outcome(script, status, time.perf_counter() - started)


def run_subprocess(script: Script, python: Path, argv: list[str]) -> Outcome:
    import subprocess

    command = [str(python), "-m", f"benchmarks.{script.module}", *argv]
    harness.log(f"=== {' '.join(command)}")
    started = time.perf_counter()
    code = subprocess.run(command, cwd=harness.REPO).returncode
    status = "ok" if code == 0 else f"failed (exit {code})"
    return Outcome(script, status, time.perf_counter() - started)


def page_body(path: Path) -> str:
    """A script's page with its headings pushed one level down (its title becomes a section)."""
    lines = path.read_text().splitlines()
    return "\n".join("#" + line if line.startswith("#") else line for line in lines)


def kept_discussion(path: Path) -> str:
    """The hand-written discussion of an existing suite page (markers included)."""
    text = path.read_text() if path.exists() else ""
    if DISCUSSION_START in text and DISCUSSION_END in text:
        start = text.index(DISCUSSION_START)
        return text[start:text.index(DISCUSSION_END) + len(DISCUSSION_END)]
    return f"{DISCUSSION_START}\n_No discussion written yet._\n{DISCUSSION_END}"


def write_suite(args, outcomes: list[Outcome], skipped: dict[str, str]) -> Path:
    out = Path(args.out)
    path = out / SUITE
    status = [{"script": f"`benchmarks.{o.script.module}`", "what": o.script.title,
               "status": o.status, "seconds": f"{o.seconds:.0f}" if o.seconds else "—",
               "page": f"[{o.script.page}]({o.script.page})" if (out / o.script.page).exists()
               else "—"} for o in outcomes]
    lines = ["# featpipe benchmark suite", "",
             *harness.provenance("benchmarks.run_all", args.argv), "",
             harness.markdown_table(status, ["script", "what", "status", "seconds", "page"]), ""]
    lines += [f"- Dataset `{n}` skipped: {reason}" for n, reason in skipped.items()]
    lines += ["", "## Discussion", "", kept_discussion(path), ""]
    for outcome in outcomes:
        page = out / outcome.script.page
        if page.exists():
            lines += [page_body(page), ""]
    return harness.write_text(path, "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.assemble_only:
        outcomes = [Outcome(s, "not run by this command (existing page)") for s in SCRIPTS
                    if (Path(args.out) / s.page).exists()]
        print(f"wrote {write_suite(args, outcomes, {})}")
        return 0
    datasets, skipped = prepare_datasets(harness.names_list(args.datasets))
    only = (set(harness.choose(args.only, [s.module for s in SCRIPTS], [], what="script"))
            if args.only else None)
    outcomes = [run_script(s, script_argv(s, args, datasets)) for s in SCRIPTS
                if only is None or s.module in only]
    path = write_suite(args, outcomes, skipped)
    for outcome in outcomes:
        harness.log(f"{outcome.script.module:22s} {outcome.status} ({outcome.seconds:.0f} s)")
    print(f"wrote {path}")
    return 0 if all(not o.status.startswith("failed") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
