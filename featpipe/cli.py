"""The `featpipe` command line: backbones, layers, extract, info, recipes, fit, predict, evaluate.

Exit codes: 0 success, 1 a problem with the input or a runtime failure, 2 a usage error.
A user mistake is reported as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from featpipe.errors import FeatpipeError, UsageError

DEBUG_ENV = "FEATPIPE_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _add_layers(sub) -> None:
    p = sub.add_parser("layers", help="list a backbone's capturable layers and presets")
    p.add_argument("model", nargs="?", default=None, help="backbone name (default: efficientnet_lite0)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--weights", default=None, help="local state_dict / safetensors file")
    p.add_argument("--no-pretrained", action="store_true", help="random init (no download)")
    p.add_argument("--pool", default="mean", help="pooling used for the dims column")
    p.add_argument("--json", action="store_true")


def _add_backbones(sub) -> None:
    sub.add_parser("backbones", help="list the embedded backbones and the name schemes")


def _add_extract(sub) -> None:
    p = sub.add_parser("extract", help="extract pooled multi-layer features into an HDF5 store")
    p.add_argument("source", help="class-per-folder directory, CSV manifest, file list or IDX file")
    p.add_argument("--out", required=True, help="output .h5 store")
    p.add_argument("--model", default=None, help="backbone (default: efficientnet_lite0)")
    p.add_argument("--weights", default=None, help="local state_dict / safetensors file")
    p.add_argument("--no-pretrained", action="store_true", help="random init (no download)")
    p.add_argument("--layers", default="full", help="last | stages | full | comma-separated nodes")
    p.add_argument("--pool", default="mean", help="mean | max | meanmax | none")
    p.add_argument("--token-pool", default="cls", choices=["cls", "mean"], help="ViT token pooling")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: auto)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="float32", help="stored dtype: float32 | float16")
    p.add_argument("--amp", default=None, help="bf16 | fp16 autocast on CUDA")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compression", default=None, help="lzf | gzip")
    p.add_argument("--shard", default=None, help="K/N: extract the K-th of N slices of the inputs")
    p.add_argument("--force", action="store_true", help="allow --pool none above the size cap")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a feature store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")


def _add_recipes(sub) -> None:
    sub.add_parser("recipes", help="list the named recipes and their default grids")


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="tune and fit a classifier on a feature store")
    p.add_argument("store")
    p.add_argument("--out", required=True, help="model file to write (.skops)")
    p.add_argument("--recipe", default=None, help="fne | l2 | linear-probe | pca-svm | umap-knn")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all stored)")
    p.add_argument("--normalize", default=None, help="l2 | layer-l2 | standard | none")
    p.add_argument("--discretize", action="store_true", default=None)
    p.add_argument("--reduce", default=None, help="pca:N | umap:N | none")
    p.add_argument("--classifier", default=None, help="linearsvc | svc | logistic | knn | ridge")
    p.add_argument("--grid", action="append", default=[], help="e.g. clf__C=0.1,1,10 (repeatable)")
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--scoring", default="accuracy", choices=["accuracy", "balanced_accuracy"])
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--halving", action="store_true", help="HalvingGridSearchCV")
    p.add_argument("--search", default="fast", choices=["fast", "grid"],
                   help="fast: C path with preprocessing once per fold (default); "
                        "grid: plain GridSearchCV")
    p.add_argument("--stats-from", default="train", metavar="train|all|FILE.h5",
                   help="standardization statistics from each training fold (default), every "
                        "row of the store without labels (test rows too: transductive) or "
                        "another store")
    test = p.add_mutually_exclusive_group()
    test.add_argument("--test", default=None, help="held-out feature store")
    test.add_argument("--test-split", default=None,
                      help="fraction (e.g. 0.2) held out, or a split name of the store")
    p.add_argument("--train-split", default=None, help="train only on this split of the store")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="joblib cache (default: ./cache)")
    p.add_argument("--report", default=None, help="folder for report.json/.md and plots")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="predict classes of images or of a feature store")
    p.add_argument("model")
    p.add_argument("source", help="feature store (.h5) or images (folder, manifest, list)")
    p.add_argument("--out", default=None, help="CSV file (default: stdout)")
    p.add_argument("--trust", action="append", default=[],
                   help="trust these types in the model file (or 'all')")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a fitted model on a labelled feature store")
    p.add_argument("model")
    p.add_argument("store")
    p.add_argument("--split", default=None, help="evaluate only this split of the store")
    p.add_argument("--report", default=None)
    p.add_argument("--trust", action="append", default=[])
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    from featpipe import __version__

    parser = _Parser(prog="featpipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"featpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_backbones, _add_layers, _add_extract, _add_info, _add_recipes, _add_fit, _add_predict,
                _add_evaluate):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `featpipe` console script."""
    try:
        args = build_parser().parse_args(argv)
        from featpipe import commands

        return getattr(commands, args.command)(args) or 0
    except FeatpipeError as exc:
        print(f"featpipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("featpipe: interrupted (an unfinished extract resumes when re-run)", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user mistake: one line unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"featpipe: internal error: {type(exc).__name__}: {exc} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
