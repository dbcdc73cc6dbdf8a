"""Shared helpers of the comparison scripts: arguments, cached feature stores, fitting a spec
and scoring it once on the test split, few-shot CV rules, and CSV / Markdown / PNG output.

Every comparison script (``compare_layers``, ``compare_recipes``, ``few_shot``,
``compare_classifiers``, ``cost``) is a thin ``main(argv) -> int`` over these helpers:

    python -m benchmarks.<name> [--datasets tuxpaint,openclipart] [--quick]
        [--out benchmarks/results] [--manifest NAME=PATH] [--image-size 128]

Features are extracted ONCE per (dataset, model, image size, layers) into
``benchmarks/data/features/<dataset>-<model>-<size>.h5`` (``--features-dir``) and reused by
every script. Hyperparameters are chosen by stratified k-fold CV on the training split only;
the test split is scored once per configuration.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from featpipe.store.reader import FeatureSet, FeatureStore

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path("benchmarks/data")
FEATURES_DIR = DATA_DIR / "features"
RESULTS_DIR = Path("benchmarks/results")
QUICK_RESULTS_DIR = Path("benchmarks/out/quick")  # git-ignored: --quick never overwrites results
DEFAULT_DATASETS = ("tuxpaint", "openclipart", "fashion-mnist")
DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_IMAGE_SIZE = 128
LAYER_PRESET = "full"
LAST_LAYER = "bn2"  # mean-pooled bn2 = Lite0's 1280-d pre-logits
SECOND_TO_LAST_LAYER = "blocks.6.0"
FULL_CV, QUICK_CV = 5, 3
QUICK_PER_CLASS = {"train": 8, "test": 6}  # --quick: at most this many images per class
FEW_SHOT_DEFAULT_C = 1.0  # LinearSVC-based recipes when a class has < 2 training images
SIMILARITY = {"tuxpaint": "high", "openclipart": "low", "fashion-mnist": "low",
              "clipart-mini": "low"}


# --------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    """The options every comparison script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help="comma-separated prepared datasets (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="tiny subsets, few grid points, cv=3 (keeps the script working)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results folder (default {RESULTS_DIR}, {QUICK_RESULTS_DIR} with --quick)")
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
    """Parse ``argv`` and resolve ``--datasets``/``--manifest`` into ``args.manifests``."""
    args = p.parse_args(argv)
    args.out = args.out or (QUICK_RESULTS_DIR if args.quick else RESULTS_DIR)
    overrides = dict(_name_path(item) for item in args.manifest)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    names += [n for n in overrides if n not in names]
    args.manifests = {n: overrides.get(n, DATA_DIR / n / "manifest.csv") for n in names}
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _name_path(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"--manifest expects NAME=PATH, got {item!r}")
    return name.strip(), Path(path)


def cv_folds(args) -> int:
    return QUICK_CV if args.quick else FULL_CV


def similarity(dataset: str) -> str:
    return SIMILARITY.get(dataset, "?")


# --------------------------------------------------------------------------- feature stores


def store_path(dataset: str, args) -> Path:
    """``<features-dir>/<dataset>-<model>-<size>.h5``."""
    return Path(args.features_dir) / f"{dataset}-{args.model}-{args.image_size}.h5"


def ensure_store(dataset: str, args, batch_size: int = 32) -> FeatureStore:
    """The dataset's cached `full` store, extracted on first use (timing kept in a sidecar)."""
    out = store_path(dataset, args)
    if not out.exists():
        from featpipe.extract.run import extract

        manifest = Path(args.manifests[dataset])
        if not manifest.exists():
            raise SystemExit(f"{manifest} is missing; run "
                             f"`python -m benchmarks.datasets prepare {dataset}` first")
        out.parent.mkdir(parents=True, exist_ok=True)
        result = extract(manifest, out, model=args.model, layers=LAYER_PRESET,
                         image_size=args.image_size, batch_size=batch_size, progress=False)
        timing = {"n_images": result.n_computed, "seconds": result.seconds,
                  "images_per_second": result.images_per_second, "machine": machine(),
                  "date": today()}
        out.with_suffix(".timing.json").write_text(json.dumps(timing, indent=2))
    return FeatureStore.open(out)


def extraction_timing(dataset: str, args) -> dict | None:
    """The sidecar written when the dataset's store was extracted (None if unknown)."""
    path = store_path(dataset, args).with_suffix(".timing.json")
    return json.loads(path.read_text()) if path.exists() else None


@dataclass
class Split:
    """The train and test rows of one dataset (all layers loaded)."""

    dataset: str
    train: FeatureSet
    test: FeatureSet

    @property
    def layers(self) -> list[str]:
        return list(self.train.layer_slices)


def load_split(dataset: str, args) -> Split:
    """Train/test features of ``dataset``; ``--quick`` keeps a few images per class."""
    store = ensure_store(dataset, args)
    train, test = store.load(split="train"), store.load(split="test")
    if args.quick:
        train = per_class_subset(train, QUICK_PER_CLASS["train"], args.seed)
        test = per_class_subset(test, QUICK_PER_CLASS["test"], args.seed)
    return Split(dataset, train, test)


def per_class_subset(data: FeatureSet, per_class: int, seed: int = 0) -> FeatureSet:
    """At most ``per_class`` seeded rows of each class, in store order."""
    from featpipe.workflows.data import subset

    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(data.y == c))[:per_class] for c in np.unique(data.y)]
    return subset(data, np.sort(np.concatenate(keep)))


def only_layers(data: FeatureSet, layers: Sequence[str]) -> FeatureSet:
    """The columns of ``layers`` (store order kept), with re-based layer slices."""
    columns, slices, start = [], {}, 0
    for name in (n for n in data.layer_slices if n in set(layers)):
        lo, hi = data.layer_slices[name]
        columns.append(np.arange(lo, hi))
        slices[name] = (start, start + hi - lo)
        start += hi - lo
    picked = np.concatenate(columns)
    return FeatureSet(X=np.ascontiguousarray(data.X[:, picked]), y=data.y, layer_slices=slices,
                      class_names=data.class_names, ids=data.ids, index=data.index,
                      splits=data.splits, provenance=data.provenance)


# --------------------------------------------------------------------------- fit and score


def run_spec(train: FeatureSet, test: FeatureSet, spec, args=None) -> dict:
    """Tune ``spec`` by CV on ``train``, score ``test`` once; one result row (no names).

    With ``args`` the row is memoized under ``<features-dir>/results-memo/``, keyed by the
    store, the exact rows and columns, and the effective search (pipeline options, grid, folds,
    seed): the same search asked for by two scripts runs once (timings are those of that run).
    """
    if args is not None:
        spec.n_jobs = args.jobs
    memo = _memo_path(train, test, spec, args) if args is not None else None
    if memo is not None and memo.exists():
        return json.loads(memo.read_text())
    row = _search_and_score(train, test, spec)
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(row))
    return row


def _search_and_score(train: FeatureSet, test: FeatureSet, spec) -> dict:
    from featpipe.report.metrics import evaluate
    from featpipe.workflows.fit import fit_features

    search = fit_features(train, spec)
    evaluation = evaluate(search.best_estimator, test.X, test.y, train.class_names)
    return {"accuracy": evaluation["accuracy"],
            "balanced_accuracy": evaluation["balanced_accuracy"],
            "cv_accuracy": search.best_score, "best_params": _params_text(search.best_params),
            "fit_seconds": search.fit_seconds, "refit_seconds": search.refit_seconds,
            "predict_seconds": evaluation["predict_seconds"],
            "n_train": int(len(train.y)), "n_test": int(len(test.y)),
            "n_features": int(train.X.shape[1])}


def _memo_path(train: FeatureSet, test: FeatureSet, spec, args) -> Path:
    import hashlib

    from featpipe.classical.recipes import build_recipe

    _, grid = build_recipe(spec.recipe, normalize=spec.normalize, discretize=spec.discretize,
                           reduce=spec.reduce, classifier=spec.classifier)
    grid.update(spec.grid)
    key = {"store": train.provenance.get("input_fingerprint"), "model": args.model,
           "size": args.image_size, "layers": list(train.layer_slices),
           "train": train.index.tolist(), "test": test.index.tolist(),
           "search": [spec.recipe, spec.normalize, spec.discretize, spec.describe()["reduce"],
                      spec.classifier, spec.cv, spec.seed, spec.scoring, spec.n_jobs],
           "grid": {k: [repr(v) for v in values] for k, values in sorted(grid.items())}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(args.features_dir) / "results-memo" / f"{digest}.json"


def fit_fixed(train: FeatureSet, test: FeatureSet, spec, params: Mapping) -> dict:
    """Fit ``spec``'s pipeline with fixed ``params`` (no CV possible), score ``test`` once."""
    from featpipe.classical.recipes import build_recipe
    from featpipe.report.metrics import evaluate

    pipeline, _ = build_recipe(spec.recipe, layer_slices=train.layer_slices,
                               normalize=spec.normalize, discretize=spec.discretize,
                               reduce=spec.reduce, classifier=spec.classifier,
                               random_state=spec.seed)
    pipeline.set_params(**params)
    started = time.perf_counter()
    pipeline.fit(train.X, train.y)
    seconds = time.perf_counter() - started
    evaluation = evaluate(pipeline, test.X, test.y, train.class_names)
    return {"accuracy": evaluation["accuracy"],
            "balanced_accuracy": evaluation["balanced_accuracy"], "cv_accuracy": float("nan"),
            "best_params": _params_text(params) + " (fixed)", "fit_seconds": seconds,
            "refit_seconds": seconds, "predict_seconds": evaluation["predict_seconds"],
            "n_train": int(len(train.y)), "n_test": int(len(test.y)),
            "n_features": int(train.X.shape[1])}


def _params_text(params: Mapping) -> str:
    return " ".join(f"{k.split('__')[-1]}={_short(v)}" for k, v in sorted(params.items()))


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def smallest_class(y: np.ndarray) -> int:
    return int(np.bincount(y)[np.unique(y)].min())


def few_shot_cv(y: np.ndarray, folds: int = FULL_CV) -> int | None:
    """CV folds for a (possibly tiny) training set: ``min(folds, smallest class)``, or None
    when some class has a single image (then a fixed default is used instead of CV)."""
    smallest = smallest_class(y)
    return None if smallest < 2 else min(folds, smallest)


def fixed_default(spec) -> dict:
    """The documented parameters used when CV is impossible (a class with one image):
    C=1 for LinearSVC-based pipelines (the grid's largest C when the grid stops below 1),
    otherwise the middle of the default sweep (for the linear probe the Kornblith sweep's
    middle, C=10**0.5)."""
    from featpipe.classical.recipes import build_recipe

    pipeline, grid = build_recipe(spec.recipe, normalize=spec.normalize,
                                  discretize=spec.discretize, reduce=spec.reduce,
                                  classifier=spec.classifier)
    if type(pipeline.named_steps["clf"]).__name__ == "LinearSVC":
        searched = spec.grid.get("clf__C", [FEW_SHOT_DEFAULT_C])
        return {"clf__C": min(FEW_SHOT_DEFAULT_C, max(searched))}
    return {name: values[len(values) // 2] for name, values in grid.items()}


def thin_grid(grid: Mapping[str, list], keep: int = 3) -> dict[str, list]:
    """Each parameter's list thinned to ``keep`` evenly spaced values (ends kept)."""
    thinned = {}
    for name, values in grid.items():
        picks = np.unique(np.linspace(0, len(values) - 1, keep).round().astype(int))
        thinned[name] = [values[i] for i in picks]
    return thinned


def grid_overrides(grid: Mapping[str, list]) -> list[str]:
    """A grid as TrainingSpec overrides (``name=v1,v2``)."""
    return [f"{name}=" + ",".join(_grid_value(v) for v in values) for name, values in grid.items()]


def quick_grid(grid: Mapping[str, list], quick: bool) -> list[str]:
    """``--quick``: the grid thinned to 3 values per parameter; otherwise no override."""
    return grid_overrides(thin_grid(grid)) if quick else []


def _grid_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def recipe_grid(recipe: str | None, classifier: str | None = None, reduce=None) -> dict:
    """The default grid build_recipe would use for this recipe/classifier."""
    from featpipe.classical.recipes import build_recipe

    return build_recipe(recipe, classifier=classifier, reduce=reduce)[1]


# --------------------------------------------------------------------------- provenance


def machine() -> str:
    """``lscpu`` model name and core count (Python's platform info where lscpu is missing)."""
    import os

    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), model)
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} cores"


def today() -> str:
    return _dt.date.today().isoformat()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "featpipe"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+dirty featpipe/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(module: str, argv: Sequence[str]) -> str:
    return " ".join(["python -m", module, *map(shlex.quote, argv)])


# --------------------------------------------------------------------------- output


def write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
    """Rows as CSV (floats with 6 significant digits)."""
    columns = list(columns or _columns(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    return path


def _columns(rows: Sequence[Mapping]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str],
                   headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(path: Path, title: str, sections: Iterable[str], args, module: str) -> Path:
    """The result page: title, how it was made (command, machine, date, commit), sections."""
    header = [f"# {title}", "",
              f"- Command: `{command_line(module, args.argv)}`",
              f"- Machine: {machine()} (no GPU)",
              f"- Date: {today()}; featpipe commit `{git_commit()}`",
              f"- Backbone: {args.model} at {args.image_size} px, layers `{LAYER_PRESET}`, "
              f"mean-pooled; CV folds on the training split: {cv_folds(args)}"
              + ("; **--quick subset**" if args.quick else ""), ""]
    path.write_text("\n".join(header) + "\n" + "\n\n".join(sections).rstrip() + "\n")
    return path


def figure(n_panels: int, width: float = 5.0, height: float = 3.6):
    """A row of ``n_panels`` matplotlib axes (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, n_panels), figsize=(width * max(1, n_panels), height),
                             squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def outputs(args, name: str) -> tuple[Path, Path, Path]:
    """``(<out>/<name>.csv, .md, .png)``, creating ``<out>``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}.csv", out / f"{name}.md", out / f"{name}.png"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def for_each_dataset(args, work: Callable[[Split], list[dict]]) -> list[dict]:
    """Run ``work`` on each dataset's split; rows get ``dataset`` and ``similarity``."""
    rows = []
    for dataset in args.manifests:
        split = load_split(dataset, args)
        log(f"[{dataset}] {len(split.train.y)} train / {len(split.test.y)} test images")
        for row in work(split):
            rows.append({"dataset": dataset, "similarity": similarity(dataset), **row})
    return rows
