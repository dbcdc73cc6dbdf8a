"""One command-line convention for every benchmark script, and the folders it implies.

Every script is ``python -m benchmarks.<name> [options]`` with a ``main(argv) -> int``. All of
them take ``--quick`` (tiny subsets, keeps the script working) and ``--out DIR`` (default
``benchmarks/results``, or the git-ignored ``benchmarks/out/quick`` with ``--quick`` so that a
quick run never overwrites results). Scripts that work on prepared datasets add the dataset and
feature-store options of :func:`parser`; a script adds only what is its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = Path("benchmarks/data")
FEATURES_DIR = DATA_DIR / "features"
RESULTS_DIR = Path("benchmarks/results")
QUICK_RESULTS_DIR = Path("benchmarks/out/quick")  # git-ignored: --quick never overwrites results
DEFAULT_DATASETS = ("tuxpaint", "openclipart", "fashion-mnist")
DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_IMAGE_SIZE = 128


def base_parser(description: str, quick_help: str | None = None) -> argparse.ArgumentParser:
    """``--quick`` and ``--out``: the options every benchmark script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help=quick_help or "tiny subsets, few grid points, cv=3 (keeps the script "
                                      "working)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results folder (default {RESULTS_DIR}, {QUICK_RESULTS_DIR} with --quick)")
    return p


def add_datasets(p: argparse.ArgumentParser, default: Iterable[str] = DEFAULT_DATASETS) -> None:
    """``--datasets``: comma-separated names of prepared datasets."""
    p.add_argument("--datasets", default=",".join(default),
                   help="comma-separated prepared datasets (default: %(default)s)")


def parser(description: str) -> argparse.ArgumentParser:
    """The options of the scripts that read prepared datasets through cached feature stores."""
    p = base_parser(description)
    add_datasets(p)
    p.add_argument("--manifest", action="append", default=[], metavar="NAME=PATH",
                   help="use this manifest for dataset NAME instead of benchmarks/data/NAME")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--features-dir", type=Path, default=FEATURES_DIR,
                   help="where extracted stores are cached (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel CV fits (n_jobs); timings are only comparable at equal --jobs")
    return p


def add_no_umap(p: argparse.ArgumentParser) -> None:
    """``--no-umap``: leave UMAP out (numba compiles it on first use, ~30 s; used by tests)."""
    p.add_argument("--no-umap", action="store_true", help="leave out the UMAP configurations")


def parse_args(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; resolve ``--out``, keep ``args.argv`` (for the page's command line) and,
    where the parser has ``--manifest``, resolve ``--datasets``/``--manifest`` into
    ``args.manifests`` (name -> manifest path)."""
    args = p.parse_args(argv)
    args.out = args.out or (QUICK_RESULTS_DIR if args.quick else RESULTS_DIR)
    if hasattr(args, "manifest"):
        overrides = dict(_name_path(item) for item in args.manifest)
        names = names_list(args.datasets)
        names += [n for n in overrides if n not in names]
        args.manifests = {n: overrides.get(n, DATA_DIR / n / "manifest.csv") for n in names}
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def names_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def choose(text: str | None, known: Iterable[str], default: Iterable[str],
           what: str = "arm") -> list[str]:
    """The comma-separated names of ``text`` (``default`` when empty), each one of ``known``."""
    known = list(known)
    names = names_list(text) or list(default)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}(s) {unknown}; choose from {', '.join(known)}")
    return names


def _name_path(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"--manifest expects NAME=PATH, got {item!r}")
    return name.strip(), Path(path)
