"""Issue 9's benchmark: is the classical stage ever the bottleneck?

For each store (Fashion-MNIST PNGs: the prepared 3,000-image set, and a 12,000-image set made
with ``python -m benchmarks.datasets prepare fashion-mnist --out benchmarks/data/fm12k
--train-per-class 800 --test-per-class 400``), Lite0 at 128 px, ``full`` layers:

1. ``featpipe extract`` builds the store (timed once, in a subprocess);
2. ``featpipe fit STORE --recipe R --cv 5`` (default grid, CV + refit + test on the store's test
   split) runs in its own subprocess per recipe: wall time, peak RSS (``os.wait4``), test
   accuracy. ``fit ÷ extract`` is the target ratio (≤ 1). Peaks are read when the fit's
   code ends, before the interpreter's teardown pages in ~190 MiB of torch's libraries
   (``harness.python_peak_rss_mib``). Memory is reported twice, as ``extra_over_X`` = (peak −
   a process holding the same imports: torch._dynamo, matplotlib for the report, umap-learn
   for ``umap-knn``) ÷ the bytes of the float32 training matrix X (target ≤ 3), and as
   ``data_over_X`` = (peak − the peak of the same fit on a 100-image store with the same
   layers) ÷ X: the memory that grows with the data, without what any fit of the recipe pays
   once (code that the first torch or numba call pages in or compiles, thread pools). That
   small fit runs first: a ``umap-knn`` fit after it loads umap-learn's compiled functions
   from numba's cache (``cache_umap_compilation``), as any fit after a machine's first does;
3. the same fit with ``--search grid`` (plain ``GridSearchCV`` over the same default grid) gives
   the reference accuracy (target: within 0.5 points, or better) — only where
   ``--reference`` names the store size.

    python -m benchmarks.bench_classical [--sizes 3k,12k] [--recipes fne,ridge,...]
        [--reference 3k] [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from benchmarks import harness

NAME = "classical"
STORES = {"3k": Path("benchmarks/data/fashion-mnist/manifest.csv"),
          "12k": Path("benchmarks/data/fm12k/fashion-mnist/manifest.csv"),
          "quick": Path("data/clipart-mini/manifest.csv")}
RECIPES = {  # name -> featpipe fit options
    "fne": ["--recipe", "fne"], "l2": ["--recipe", "l2"],
    "linear-probe": ["--recipe", "linear-probe", "--layers", "last"],
    "ridge": ["--recipe", "ridge"], "ridge (last layer)": ["--recipe", "ridge", "--layers", "last"],
    "pca-svm": ["--recipe", "pca-svm"], "umap-knn": ["--recipe", "umap-knn"],
    "standard + linearsvc": ["--normalize", "standard", "--classifier", "linearsvc"],
}
FIT_IMPORTS = ("featpipe.cli", "featpipe.workflows.fit", "featpipe.classical.recipes",
               "featpipe.classical.search", "featpipe.classical.fastsearch",
               "featpipe.classical.persist", "featpipe.report.writer",
               "featpipe.classical.transformers", "sklearn.svm", "sklearn.linear_model",
               "sklearn.decomposition", "skops.io", "torch",
               # torch.optim imports it on the first optimizer (the L-BFGS solvers): ~150 MB of
               # modules that any featpipe fit with a torch solver pays whatever the data size
               "torch._dynamo",
               # what the report's plots import
               "matplotlib.figure", "matplotlib.backends.backend_agg")
#: what a recipe imports besides :data:`FIT_IMPORTS`
RECIPE_IMPORTS = {"umap-knn": ("umap",)}
#: The small store of ``data_over_X``: this many train and test images per class.
SMALL_PER_CLASS = {"train": 8, "test": 2}
COLUMNS = ["size", "recipe", "search", "seconds", "fit_over_extract", "peak_rss_mib",
           "imports_rss_mib", "extra_over_X", "data_over_X", "test_accuracy", "cv_accuracy",
           "best_params", "grid_extended", "load"]


def extract_store(size: str, args) -> tuple[Path, float, float]:
    """The store of ``size`` (built by `featpipe extract` in a subprocess): path, seconds,
    bytes of the float32 training matrix."""
    out = Path(args.features_dir) / f"classical-{size}.h5"
    timing = out.with_suffix(".extract.json")
    if not out.exists():
        command = [sys.executable, "-m", "featpipe.cli", "extract", str(STORES[size]),
                   "--out", str(out), "--layers", "full", "--image-size", "128", "--quiet",
                   "--allow-outside"]
        out.parent.mkdir(parents=True, exist_ok=True)
        _, seconds, code, err = harness.peak_rss_mib(command)
        if code:
            raise SystemExit(f"extract of {size} failed: {err}")
        harness.write_json(timing, {"seconds": seconds, "load": harness.format_load(),
                                    "date": harness.today()}, indent=2)
    from featpipe.store import FeatureStore

    store = FeatureStore.open(out)
    n_train = int(sum(1 for s in store.splits[store.ok_rows] if s == "train"))
    return out, harness.read_json(timing)["seconds"], n_train * sum(store.layers.values()) * 4.0


def small_store(size: str, args) -> Path:
    """A store of :data:`SMALL_PER_CLASS` images per class of the set of ``size`` (same
    layers), for the fits' fixed memory."""
    import csv

    out = Path(args.features_dir) / f"classical-{size}-small.h5"
    if out.exists():
        return out
    source = STORES[size].resolve()
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    taken: dict[tuple, int] = {}
    manifest = out.with_suffix(".csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        for row in rows:
            key = (row["label"], row["split"])
            if taken.get(key, 0) < SMALL_PER_CLASS.get(row["split"], 0):
                taken[key] = taken.get(key, 0) + 1
                writer.writerow({"path": str(source.parent / row["path"]), "label": row["label"],
                                 "split": row["split"]})
    command = [sys.executable, "-m", "featpipe.cli", "extract", str(manifest), "--out", str(out),
               "--layers", "full", "--image-size", "128", "--quiet", "--allow-outside"]
    _, _, code, err = harness.peak_rss_mib(command)
    if code:
        raise SystemExit(f"extract of the small store failed: {err}")
    return out


def imports(recipe: str) -> str:
    return "import sys, " + ", ".join(FIT_IMPORTS + RECIPE_IMPORTS.get(recipe, ()))


def baseline_mib(recipe: str) -> float:
    """Peak RSS of a process that only imports what a fit of ``recipe`` imports."""
    rss, _, code, err = harness.python_peak_rss_mib(imports(recipe))
    if code:
        raise SystemExit(f"import baseline failed: {err}")
    return rss


def fit_mib(store: Path, recipe: str, search: str, cv: int, report: Path):
    """`featpipe fit` of ``recipe`` on ``store`` with its imports preloaded: peak RSS (MiB),
    seconds, exit code, last stderr line."""
    code = imports(recipe) + "; from featpipe.cli import main; sys.exit(main(sys.argv[1:]))"
    return harness.python_peak_rss_mib(code, [
        "fit", str(store), *RECIPES[recipe], "--cv", str(cv), "--search", search,
        "--out", str(report) + ".skops", "--report", str(report), "--quiet"])


def fixed_mib(small: Path, recipe: str, search: str, work: Path, cv: int) -> float | None:
    """Peak RSS of ``recipe`` fitted on the small store (None when that fit failed)."""
    rss, _, code, err = fit_mib(small, recipe, search, cv, work / "small-fit")
    if code:
        harness.log(f"[small] {recipe} ({search}) failed: {err}")
    return None if code else rss


def fit_row(size: str, recipe: str, search: str, store: Path, work: Path, extract_seconds: float,
            x_bytes: float, baseline: float, cv: int, small: Path) -> dict:
    report = work / f"{size}-{recipe}-{search}".replace(" ", "_").replace("(", "").replace(")", "")
    fixed = fixed_mib(small, recipe, search, work, cv)
    load = harness.format_load()
    rss, seconds, code, err = fit_mib(store, recipe, search, cv, report)
    if code:
        harness.log(f"[{size}] {recipe} ({search}) failed: {err}")
        return {"size": size, "recipe": recipe, "search": search, "seconds": seconds,
                "best_params": f"failed: {err}", "load": load}
    result = json.loads((report / "report.json").read_text())
    extended = result["search"].get("extra", {}).get("grid_extended")
    row = {"size": size, "recipe": recipe, "search": search, "seconds": seconds,
           "fit_over_extract": seconds / extract_seconds, "peak_rss_mib": rss,
           "imports_rss_mib": baseline,
           "extra_over_X": (rss - baseline) * harness.MIB / x_bytes,
           "data_over_X": None if fixed is None else (rss - fixed) * harness.MIB / x_bytes,
           "test_accuracy": result["evaluation"]["accuracy"],
           "cv_accuracy": result["search"]["best_score"],
           "best_params": json.dumps(result["search"]["best_params"]),
           "grid_extended": json.dumps(extended["added"]) if extended else "", "load": load}
    harness.log(f"[{size}] {recipe} ({search}): {seconds:.1f} s = {row['fit_over_extract']:.2f}"
                f" x extract, {row['extra_over_X']:.2f} x X ({row['data_over_X'] or 0:.2f} x X"
                f" beyond the small store's fit), test {row['test_accuracy']:.3f}")
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3k,12k")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--reference", default="3k", help="sizes also fitted with --search grid")
    args = harness.parse_args(p, argv)
    sizes = ["quick"] if args.quick else harness.choose(args.sizes, STORES, [], "size")
    recipes = harness.choose(args.recipes, RECIPES, [], "recipe")
    cv = 3 if args.quick else 5
    rows = []
    baselines = {recipe: baseline_mib(recipe) for recipe in recipes}
    small = small_store(sizes[0], args)
    with tempfile.TemporaryDirectory(prefix="featpipe-classical-") as tmp:
        for size in sizes:
            store, extract_seconds, x_bytes = extract_store(size, args)
            harness.log(f"[{size}] extract {extract_seconds:.1f} s, X {x_bytes / harness.MIB:.0f}"
                        " MiB")
            searches = ["fast", "grid"] if size in args.reference.split(",") else ["fast"]
            for recipe in recipes:
                for search in searches:
                    rows.append(fit_row(size, recipe, search, store, Path(tmp), extract_seconds,
                                        x_bytes, baselines[recipe], cv, small))
    out = harness.outputs(args, NAME)
    harness.write_csv(out.csv, rows, COLUMNS)
    harness.write_page(out.md, "Issue 9: fit ÷ extract, fit memory ÷ X, accuracy vs plain grid",
                       harness.provenance(f"benchmarks.bench_{NAME}", args.argv),
                       [__doc__.split("\n\n", 1)[1].split("    python -m")[0].strip(),
                        harness.markdown_table(rows, COLUMNS)])
    harness.log(out.md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
