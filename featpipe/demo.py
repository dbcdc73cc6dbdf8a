"""`make demo`: the main job on the bundled data, end to end, in a few minutes on a laptop CPU.

Extract the Full-Network Embedding layers of the bundled EfficientNet-Lite0 for the bundled
public-domain drawings, then fit the FNE recipe and last-layer baselines with cross-validated
search on the train split, score each once on the test split, and write a side-by-side table
and plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from featpipe.errors import FeatpipeError

REPO_DATA = Path(__file__).resolve().parents[1] / "data" / "clipart-mini" / "manifest.csv"


def _runs(last_layer: str) -> dict:
    from featpipe.workflows.fit import TrainingSpec

    return {
        "last layer: linear probe": TrainingSpec(recipe="linear-probe", layers=[last_layer]),
        "last layer: L2 + SVM": TrainingSpec(recipe="l2", layers=[last_layer]),
        "full network: L2 + SVM": TrainingSpec(recipe="l2"),
        "full network: FNE": TrainingSpec(recipe="fne"),
    }


def run(data: Path, out_dir: Path, image_size: int, cv: int) -> str:
    from featpipe.extract import extract
    from featpipe.report.plots import comparison_plot, comparison_table
    from featpipe.store.reader import FeatureStore
    from featpipe.workflows.fit import fit_store

    out_dir.mkdir(parents=True, exist_ok=True)
    store_path = out_dir / "features.h5"
    result = extract(data, store_path, layers="full", image_size=image_size, overwrite=True)
    print(f"extracted {result.n_images} images ({result.n_failed} failed) at "
          f"{result.images_per_second:.1f} img/s into {store_path}")
    store = FeatureStore.open(store_path)
    rows = {}
    for name, spec in _runs(list(store.layers)[-1]).items():
        spec.cv = cv
        slug = name.split(":")[0].replace(" ", "-") + "-" + spec.recipe
        outcome = fit_store(store_path, spec, out=out_dir / f"{slug}.skops",
                            report_dir=out_dir / slug)
        layers = spec.layers or list(store.layers)
        rows[name] = {
            "layers": len(layers),
            "features": sum(store.layers[n] for n in layers),
            "cv_accuracy": outcome.search.best_score,
            "test_accuracy": outcome.evaluation["accuracy"],
            "test_balanced_accuracy": outcome.evaluation["balanced_accuracy"],
            "fit_seconds": outcome.search.fit_seconds,
        }
        print(f"  {name}: {outcome.summary_line()}")
    table = comparison_table(rows)
    (out_dir / "comparison.md").write_text(table + "\n")
    comparison_plot(rows, out_dir / "comparison.png")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="featpipe-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_DATA,
                        help="labelled images (default: the bundled clipart-mini manifest)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cv", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        table = run(args.data, args.out, args.image_size, args.cv)
    except FeatpipeError as exc:
        from featpipe.cli import as_flags

        print(f"featpipe demo: error: {as_flags(str(exc))}", file=sys.stderr)
        return 1
    print()
    print(table)
    print(f"\nreports, models and comparison.png are in {args.out}/; the store:")
    from featpipe.cli import main as cli_main

    return cli_main(["info", str(args.out / "features.h5")])


if __name__ == "__main__":
    sys.exit(main())
