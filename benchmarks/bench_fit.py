"""Issue 3's benchmark: what the classical stage costs.

(a) **Cache**: :func:`featpipe.search.run_search` over the same grid and folds with
    ``cache=False``, with a fresh joblib cache (``cold``), again on the filled cache (``warm``),
    and with ``cache="auto"`` (which decides per pipeline); best parameters must agree.
(b) **Against the fne package** (GPLv3, benchmark environment only): accuracy and wall time on
    the same images, backbone and layers live in ``benchmarks/peers.py`` (``peers.md``).
(c) **Memory**: ``featpipe fit`` in a subprocess per recipe; its peak RSS (``os.wait4``, the
    per-child ``ru_maxrss``) minus the RSS of a process that only imports the same modules,
    relative to the bytes of the training matrix X.

    python -m benchmarks.bench_fit [--datasets fashion-mnist] [--quick] [--out DIR]
        [--manifest NAME=PATH] [--features-dir DIR] [--image-size 128]

Writes ``<out>/fit.csv`` (one row per measurement, ``part`` = cache | memory), ``fit.md`` and
``fit.png``. Timings are comparable only within one run: the arms of a comparison run back
to back in the same process; the 1-minute load average is recorded with each.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks import common, harness

NAME = "fit"
MODULE = "benchmarks.bench_fit"
DEFAULT_DATASETS = "fashion-mnist"
CACHE_RECIPES = ("fne", "pca-svm")
MEMORY_RECIPES = ("fne", "l2", "linear-probe", "pca-svm")
QUICK_MEMORY_RECIPES = ("fne",)
CACHE_ARMS = ("off", "cold", "warm", "auto")
MEMORY_GRID_POINTS = 3  # peak memory does not depend on the number of grid points
FIT_IMPORTS = ("featpipe.cli", "featpipe.workflows.fit", "featpipe.classical.recipes",
               "featpipe.classical.search", "featpipe.report.writer", "featpipe.classical.persist",
               "featpipe.classical.transformers",
               "sklearn.svm", "sklearn.linear_model", "sklearn.decomposition",
               "skops.io")  # skops.io lists sklearn's estimators, which imports torch
FIT_CHILD = ("import sys, " + ", ".join(FIT_IMPORTS)
             + "; from featpipe.cli import main; sys.exit(main(sys.argv[1:]))")


# --------------------------------------------------------------------------- (a) cache


def recipe_grid(recipe: str, quick: bool) -> dict:
    """The recipe's default grid, thinned to 3 values with ``--quick``."""
    grid = common.recipe_grid(recipe)
    return {**grid, **(common.thin_grid(grid) if quick else {})}


def search_once(train, recipe: str, grid: dict, cv: int, cache, cache_dir: Path | None):
    """One cross-validated search of ``recipe`` on ``train``; returns the SearchResult."""
    from featpipe.classical.recipes import build_recipe
    from featpipe.classical.search import run_search

    pipeline, _ = build_recipe(recipe, layer_slices=train.layer_slices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LinearSVC convergence warnings at small C
        return run_search(pipeline, grid, train.X, train.y, cv=cv, cache=cache,
                          cache_dir=None if cache_dir is None else str(cache_dir))


def warm_up(train, cv: int) -> None:
    """A small untimed search so that the first measured arm pays no one-time costs."""
    rows = common.per_class_subset(train, max(cv, 4))
    search_once(rows, "fne", {"clf__C": [1.0]}, cv, False, None)


def cache_rows(split: common.Split, args) -> list[dict]:
    """Arms ``off``, ``cold``, ``warm``, ``auto`` (fresh folder) for each recipe."""
    cv = common.cv_folds(args)
    warm_up(split.train, cv)
    rows = []
    for recipe in CACHE_RECIPES:
        grid = recipe_grid(recipe, args.quick)
        with tempfile.TemporaryDirectory(prefix="fit-cache-") as tmp:
            arms = {"off": (False, None), "cold": (True, Path(tmp, "shared")),
                    "warm": (True, Path(tmp, "shared")), "auto": ("auto", Path(tmp, "auto"))}
            results = {}
            for arm in CACHE_ARMS:
                cache, folder = arms[arm]
                measured = harness.measure(search_once, split.train, recipe, grid, cv, cache,
                                           folder)
                results[arm], load = measured.value, measured.load[0]
                harness.log(f"[{split.dataset}] {recipe} cache={arm}: "
                            f"{results[arm].fit_seconds:.2f} s (load {load:.2f})")
                rows.append(cache_row(recipe, arm, results[arm], grid, cv, split, load))
        check_same_choice(recipe, results)
        add_speedups(rows[-len(CACHE_ARMS):])
    return rows


def cache_row(recipe, arm, result, grid, cv, split, load) -> dict:
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    return {"part": "cache", "recipe": recipe, "arm": arm,
            "cached": result.extra.get("cache") is not None,
            "seconds": result.fit_seconds, "cv_accuracy": result.best_score,
            "best_params": common.params_text(result.best_params),
            "n_candidates": n_candidates, "cv": cv, "n_train": int(len(split.train.y)),
            "n_features": int(split.train.X.shape[1]), "load": load}


def check_same_choice(recipe: str, results: dict) -> None:
    """Caching must not change the search's outcome."""
    chosen = {arm: r.best_params for arm, r in results.items()}
    if len({repr(sorted(p.items())) for p in chosen.values()}) != 1:
        raise RuntimeError(f"{recipe}: cached and uncached searches disagree: {chosen}")


def add_speedups(rows: list[dict]) -> None:
    """``speedup`` = uncached seconds / this arm's seconds (same recipe, same run)."""
    off = next(r["seconds"] for r in rows if r["arm"] == "off")
    for row in rows:
        row["speedup"] = off / row["seconds"] if row["seconds"] > 0 else float("nan")


# --------------------------------------------------------------------------- (c) memory


def baseline_rss_mib() -> float:
    """Peak RSS of a Python process that only imports what ``featpipe fit`` imports."""
    code = "import " + ", ".join(FIT_IMPORTS)
    rss, _, code_rc, err = harness.python_peak_rss_mib(code)
    if code_rc != 0:
        raise RuntimeError(f"baseline import process failed: {err}")
    return rss


def fit_arguments(store: Path, recipe: str, out_dir: Path, cv: int) -> list[str]:
    """The arguments of :data:`FIT_CHILD`: ``featpipe fit`` on the store's train split (scored
    on its test split), with the imports preloaded: ``featpipe fit`` imports skops.io (and
    through it torch, ~600 MiB) only when it saves the model, after fitting, so without
    preloading the peak would be that import rather than the fit's working set on top of it.
    """
    grid = common.recipe_grid(recipe)
    overrides = common.quick_grid(grid, True)  # MEMORY_GRID_POINTS values per parameter
    arguments = ["fit", str(store), "--recipe", recipe,
                 "--out", str(out_dir / f"{recipe}.skops"), "--cv", str(cv),
                 "--cache-dir", str(out_dir / "cache")]
    for item in overrides:
        arguments += ["--grid", item]
    return arguments


def memory_rows(dataset: str, args) -> list[dict]:
    """Peak RSS of ``featpipe fit`` per recipe relative to the training matrix's bytes."""
    store = common.ensure_store(dataset, args)
    n_train = int(np.sum(store.splits[store.ok_rows] == "train")) if store.splits is not None \
        else len(store.ok_rows)
    n_features = int(sum(store.layers.values()))
    x_mib = n_train * n_features * 4 / harness.MIB
    baseline = baseline_rss_mib()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fit-memory-") as tmp:
        for recipe in QUICK_MEMORY_RECIPES if args.quick else MEMORY_RECIPES:
            load = harness.load_average()[0]
            arguments = fit_arguments(store.path, recipe, Path(tmp), common.cv_folds(args))
            rss, seconds, rc, err = harness.python_peak_rss_mib(FIT_CHILD, arguments)
            if rc != 0:
                raise RuntimeError(f"featpipe fit --recipe {recipe} failed ({rc}): {err}")
            harness.log(f"[{dataset}] fit {recipe}: peak RSS {rss:.0f} MiB "
                       f"(baseline {baseline:.0f}, X {x_mib:.1f} MiB), {seconds:.1f} s")
            rows.append({"part": "memory", "recipe": recipe, "n_train": n_train,
                         "n_features": n_features, "x_mib": x_mib, "peak_rss_mib": rss,
                         "baseline_rss_mib": baseline, "extra_mib": rss - baseline,
                         "extra_over_x": (rss - baseline) / x_mib, "seconds": seconds,
                         "cv": common.cv_folds(args), "load": load})
    return rows


# --------------------------------------------------------------------------- output


def cache_section(rows: list[dict]) -> str:
    table = harness.markdown_table(
        rows, ["dataset", "recipe", "arm", "cached", "seconds", "speedup", "cv_accuracy",
               "best_params", "n_candidates", "cv", "n_train", "n_features", "load"],
        ["dataset", "recipe", "cache", "cached?", "search s", "uncached / this", "CV acc",
         "best", "grid points", "folds", "train rows", "features", "load"])
    return ("## (a) Cached vs uncached search (same grid, same folds)\n\n"
            "`off` = `cache=False`; `cold` = `cache=True` into an empty folder; `warm` = the "
            "same search again on that filled folder; `auto` = `cache='auto'` into another "
            "empty folder (caches only pipelines with a `reduce` step). Wall time of the whole "
            "search including the refit. The arms of a recipe ran back to back.\n\n" + table)


def memory_section(rows: list[dict]) -> str:
    table = harness.markdown_table(
        rows, ["dataset", "recipe", "n_train", "n_features", "x_mib", "peak_rss_mib",
               "baseline_rss_mib", "extra_mib", "extra_over_x", "seconds", "load"],
        ["dataset", "recipe", "train rows", "features", "X MiB (float32)", "peak RSS MiB",
         "imports-only RSS MiB", "fit's extra MiB", "extra / X", "wall s", "load"])
    return ("## (c) Peak memory of `featpipe fit`\n\n"
            "One `featpipe fit STORE --recipe R --cv K` subprocess per recipe, its imports "
            "(skops.io pulls in torch) loaded before fitting so they are resident throughout "
            f"({MEMORY_GRID_POINTS} grid points; peak memory does not grow with the grid), "
            "trained on the store's train split and scored on its test split. Peak RSS is the "
            "child's own `ru_maxrss` (`os.wait4`); `imports-only` is a process importing the "
            "same modules; `extra / X` = (peak − imports-only) / bytes of the float32 training "
            "matrix.\n\n" + table)


PEERS_NOTE = ("## (b) Against the `fne` package\n\n"
              "See [peers.md](peers.md) (`python -m benchmarks.peers` in the benchmark "
              "environment `.venv-bench`): the `fne` 1.6.5 rows compare accuracy and wall time "
              "with featpipe's `fne` recipe on the same images, backbone and layers.")


def plot(rows: list[dict], path: Path) -> Path:
    cache = [r for r in rows if r["part"] == "cache"]
    memory = [r for r in rows if r["part"] == "memory"]
    fig, (left, right) = harness.figure(2)
    labels = [f"{r['dataset']}\n{r['recipe']}" for r in cache if r["arm"] == "off"]
    width = 0.8 / len(CACHE_ARMS)
    for k, arm in enumerate(CACHE_ARMS):
        values = [r["seconds"] for r in cache if r["arm"] == arm]
        left.bar(np.arange(len(values)) + k * width, values, width, label=arm)
    left.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    left.set_ylabel("search wall time (s)")
    left.set_title("(a) grid search by cache setting")
    left.legend()
    names = [f"{r['dataset']}\n{r['recipe']}" for r in memory]
    right.bar(np.arange(len(memory)), [r["extra_over_x"] for r in memory])
    right.set_xticks(np.arange(len(memory)), names, fontsize=8)
    right.set_ylabel("(peak RSS − imports) / bytes of X")
    right.set_title("(c) memory of featpipe fit")
    return harness.save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.set_defaults(datasets=DEFAULT_DATASETS)
    p.add_argument("--skip-cache", action="store_true", help="skip part (a)")
    p.add_argument("--skip-memory", action="store_true", help="skip part (c)")
    args = harness.parse_args(p, argv)
    rows = []
    for dataset in args.manifests:
        split = common.load_split(dataset, args)
        harness.log(f"[{dataset}] {len(split.train.y)} train rows x {split.train.X.shape[1]}")
        part = [] if args.skip_cache else cache_rows(split, args)
        part += [] if args.skip_memory else memory_rows(dataset, args)
        rows += [{"dataset": dataset, **row} for row in part]
    csv_path, md_path, png_path = harness.outputs(args, NAME)
    harness.write_csv(csv_path, rows)
    sections = [cache_section([r for r in rows if r["part"] == "cache"]), PEERS_NOTE,
                memory_section([r for r in rows if r["part"] == "memory"])]
    common.write_markdown(md_path, "Fitting: cache, peers, memory (issue 3)", sections, args,
                          MODULE)
    plot(rows, png_path)
    harness.log(f"wrote {csv_path}, {md_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
