"""Comparison 6, cost: extraction images/s per layer preset, and classical-stage seconds per
configuration.

Extraction: the first N images of each dataset's manifest (N = 128, 16 with --quick) are
extracted afresh into a temporary store with the ``last`` (one layer), ``stages`` and
``full`` (18 layers) presets, batch 32, on the CPU, after one untimed warm-up extraction;
images/s counts decoding, the forward pass with capture and pooling, and the HDF5 writes (model loading excluded). The throughput of the
cached whole-dataset ``full`` extraction is listed too.

Classical stage: for every configuration of comparison 2 (plus PCA-256 + LinearSVC and
UMAP-32 + kNN on the last layer), one fit on the whole training split with fixed parameters
(C = 1 for LinearSVC, the middle of the default grid otherwise) and one prediction of the test
split. A CV search costs about ``grid points x folds + 1`` such fits; the measured search times
are in comparisons 2 and 4.

    python -m benchmarks.cost [--datasets tuxpaint,openclipart] [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchmarks import common, harness
from benchmarks.compare_recipes import CONFIGURATIONS, Configuration, layer_names, make_spec

NAME = "cost"
PRESETS = ("last", "stages", "full")
EXTRACT_IMAGES, QUICK_EXTRACT_IMAGES = 128, 16
WARM_UP_IMAGES = 8  # one untimed extraction first: the first forward pass pays one-off costs
EXTRA_CONFIGURATIONS = (
    Configuration("last layer, PCA-256 + LinearSVC", "last", "pca-svm"),
    Configuration("last layer, UMAP-32 + kNN", "last", "umap-knn"),
)
COLUMNS = ["dataset", "similarity", "stage", "configuration", "n_images", "n_features",
           "seconds", "images_per_second", "predict_seconds", "params"]


def extraction_rows(dataset: str, args) -> list[dict]:
    """Fresh extractions of the first N images with each preset, plus the cached full run."""
    from featpipe.extract.run import extract
    from featpipe.data.sources import open_source
    from featpipe.store.reader import FeatureStore

    images = open_source(args.manifests[dataset], allow_outside=True)
    images = images.subset(range(min(len(images), _n_extract(args))))
    rows = []
    with tempfile.TemporaryDirectory(prefix="featpipe-cost-") as tmp:
        warm_up = images.subset(range(min(len(images), WARM_UP_IMAGES)))
        extract(warm_up, Path(tmp) / "warm-up.h5", model=args.model, layers="full",
                image_size=args.image_size, batch_size=32, progress=False)
        for preset in PRESETS:
            out = Path(tmp) / f"{preset}.h5"
            result = extract(images, out, model=args.model, layers=preset,
                             image_size=args.image_size, batch_size=32, progress=False)
            n_features = sum(FeatureStore.open(out).layers.values())
            rows.append(_extraction_row(f"extract `{preset}`", result.n_computed, n_features,
                                        result.seconds))
            harness.log(f"[{dataset}] extract {preset}: {result.images_per_second:.1f} images/s")
    cached = common.extraction_timing(dataset, args)
    if cached:
        rows.append(_extraction_row("extract `full`, whole dataset (cached store)",
                                    cached["n_images"], None, cached["seconds"]))
    return rows


def _n_extract(args) -> int:
    return QUICK_EXTRACT_IMAGES if args.quick else EXTRACT_IMAGES


def _extraction_row(label: str, n_images: int, n_features, seconds: float) -> dict:
    return {"stage": "extraction", "configuration": label, "n_images": n_images,
            "n_features": n_features, "seconds": seconds,
            "images_per_second": n_images / seconds if seconds > 0 else float("nan")}


def classical_rows(split: common.Split, args) -> list[dict]:
    """One fixed-parameter fit + one test prediction per configuration."""
    rows = []
    for config in configurations(args):
        layers = layer_names(config.layers, split.layers)
        train, test = split.only(layers)
        spec = make_spec(config, args)
        params = common.fixed_default(spec)
        result = common.fit_fixed(train, test, spec, params)
        rows.append({"stage": "classical", "configuration": config.label,
                     "n_images": result["n_train"], "n_features": result["n_features"],
                     "seconds": result["fit_seconds"],
                     "images_per_second": result["n_train"] / result["fit_seconds"],
                     "predict_seconds": result["predict_seconds"],
                     "params": result["best_params"]})
        harness.log(f"[{split.dataset}] fit {config.label}: {result['fit_seconds']:.2f} s")
    return rows


def configurations(args) -> list[Configuration]:
    chosen = list(CONFIGURATIONS + EXTRA_CONFIGURATIONS)
    return [c for c in chosen if not (args.no_umap and c.recipe == "umap-knn")]


def measure(split: common.Split, args) -> list[dict]:
    return extraction_rows(split.dataset, args) + classical_rows(split, args)


def plot(rows: list[dict], path) -> None:
    """Left: extraction images/s per preset; right: one classical fit's seconds (log)."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, (left, right) = harness.figure(2, width=6, height=4.2)
    _bars(left, rows, datasets, "extraction", "images_per_second", "images / s")
    _bars(right, rows, datasets, "classical", "seconds", "seconds for one fit")
    right.set_yscale("log")
    left.set_title("Extraction throughput (CPU)")
    right.set_title("Classical stage, one fit on the training split")
    harness.save_figure(fig, path)


def _bars(ax, rows, datasets, stage, value, ylabel) -> None:
    mine = [r for r in rows if r["stage"] == stage]
    labels = list(dict.fromkeys(r["configuration"] for r in mine))
    width = 0.8 / max(1, len(labels))
    for k, label in enumerate(labels):
        values = [next((r[value] for r in mine if r["dataset"] == d and
                        r["configuration"] == label), 0.0) for d in datasets]
        ax.bar([i + k * width for i in range(len(datasets))], values, width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(datasets))], datasets)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=6)


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.parser(__doc__.splitlines()[0])
    harness.add_no_umap(p)
    args = harness.parse_args(p, argv)
    started = time.perf_counter()
    rows, out = common.run_comparison(args, measure, NAME, COLUMNS)
    plot(rows, out.png)
    notes = (f"Extraction: first {_n_extract(args)} images per dataset, batch 32, CPU, model "
             "loading excluded. Classical: one fit on the whole training split with fixed "
             "parameters (no CV) and one prediction of the test split. Measured on a shared "
             "2-core CPU with other jobs running: compare ratios within a table, not "
             "absolute times.")
    extraction = [r for r in rows if r["stage"] == "extraction"]
    classical = [r for r in rows if r["stage"] == "classical"]
    sections = [notes,
                "## Extraction\n\n" + harness.markdown_table(
                    extraction, ["dataset", "configuration", "n_images", "n_features",
                                 "seconds", "images_per_second"]),
                "## Classical stage\n\n" + harness.markdown_table(
                    classical, ["dataset", "configuration", "n_images", "n_features", "params",
                                "seconds", "predict_seconds"]),
                f"![cost]({out.png.name})",
                f"Total script time {time.perf_counter() - started:.0f} s."]
    return common.finish(out, "Comparison 6: cost", sections, args, f"benchmarks.{NAME}")


if __name__ == "__main__":
    sys.exit(main())
