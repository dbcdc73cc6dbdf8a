"""Comparison 8, frozen features vs fine-tuning (issue 11): the lectures' central question.

"Frozen features win on small data, fine-tuning catches up with more." On a high-similarity
target (Tux Paint photos) and a low-similarity one (OpenClipart drawings), at 5, 10 and all
training images per class (balanced seeded draws from the training split; 3 seeds), every arm
is scored once on the whole test split:

- frozen features + classical stage: ``fne`` on the full network, and the linear probe on the
  last layer (C by ``min(5, k)``-fold CV on the draw);
- fine-tuning with ``featpipe.finetuning.train`` for the same number of epochs: the head only
  (``freeze=all``), the top stages (``freeze=3`` of Lite0's 5), everything, everything with
  layer-wise learning-rate decay, and LP-FT (everything, head started from the linear probe).

Every image is decoded and padded to the square once (featpipe's ``pad`` preprocessing); the
frozen features are extracted from exactly those pixels, and fine-tuning trains on them (with
its random-resized-crop and flip augmentation). Fine-tuning holds out 20 % of each class of
the draw (at least one image) to pick the best epoch, so it trains on fewer images than the
classical arms' CV sees: the comparison is "the same labelled images", as a user would have.

    python -m benchmarks.compare_finetune [--datasets tuxpaint,openclipart] [--epochs 6]
        [--seeds 3] [--sizes 5,10,all] [--image-size 96] [--quick]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from benchmarks import common, harness
from benchmarks.datasets import few_shot_splits

NAME = "compare_finetune"
ALL = "all"
FROZEN_ARMS = {  # name -> (layers preset, recipe)
    "frozen: fne (full network)": ("full", "fne"),
    "frozen: linear probe (last layer)": ("last", "linear-probe"),
}
TUNED_ARMS = {  # name -> FinetuneSpec changes
    "fine-tune: head only": dict(freeze="all"),
    "fine-tune: top 2 stages": dict(freeze=3),
    "fine-tune: all": dict(freeze="none"),
    "fine-tune: all, layer decay 0.6": dict(freeze="none", layer_decay=0.6),
    "LP-FT: all, probe head": dict(freeze="none", head_init="probe"),
}
SHARED = dict(optimizer="adamw", lr=3e-4, head_lr=3e-3, weight_decay=0.05, warmup_epochs=1.0,
              label_smoothing=0.1, batch_size=16, val_split=0.2, patience=None,
              augment="standard", resize="pad")
COLUMNS = ["dataset", "similarity", "arm", "size", "seed", "n_train", "accuracy",
           "balanced_accuracy", "seconds", "best_epoch", "detail"]
SUMMARY_KEYS = ("dataset", "similarity", "arm", "size")


def parser():
    p = harness.parser(__doc__.splitlines()[0])
    p.set_defaults(datasets="tuxpaint,openclipart", image_size=96)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sizes", default="5,10,all")
    p.add_argument("--all-seeds", type=int, default=None,
                   help="seeds for 'all' (default: --seeds)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of an existing CSV and run only what it lacks")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the page and plot from an existing CSV (e.g. of a stopped run)")
    p.add_argument("--cap-all", type=int, default=None, metavar="N",
                   help="'all' takes at most N training images per class (drawn per seed)")
    return p


def square_pixels(manifest, args):
    """The dataset decoded and padded to the network's square once, as an in-memory ImageSet
    with the manifest's ids, labels and splits."""
    from featpipe.data.imageset import ImageSet
    from featpipe.data.sources import open_source
    from featpipe.finetuning.data import decode_crops
    from featpipe.models import create_backbone

    image_set = open_source(manifest, allow_outside=True)
    prep = create_backbone(args.model, image_size=args.image_size).preprocessing.with_resize("pad")
    crops = decode_crops(image_set, prep, image_set.class_names)
    keep = crops.positions.tolist()
    arrays = [image.permute(1, 2, 0).numpy() for image in crops.images]
    return ImageSet(items=arrays, ids=[image_set.ids[i] for i in keep],
                    labels=[image_set.labels[i] for i in keep],
                    splits=[image_set.splits[i] for i in keep], root=None, kind="arrays")


def frozen_store(dataset: str, pixels, args):
    """`full` + `last` features of exactly those pixels (extracted once, cached)."""
    from featpipe.extract import extract
    from featpipe.store.reader import FeatureStore

    path = args.features_dir / f"finetune-{dataset}-{args.model}-{args.image_size}-pad.h5"
    if not path.exists():
        extract(pixels, path, layers=("full", "last"), model=args.model,
                image_size=args.image_size, resize="pad", progress=False)
    return FeatureStore.open(path)


def draws(train_labels: np.ndarray, size, seeds: list[int],
          cap: int | None) -> list[tuple[int, np.ndarray]]:
    """Balanced k-shot draws; for "all", every training image (at most ``cap`` per class,
    drawn per seed)."""
    if size != ALL:
        return list(zip(seeds, few_shot_splits(train_labels, size, seeds)))
    if cap is None:
        return [(seed, np.arange(len(train_labels))) for seed in seeds]
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        picked = [rng.permutation(np.flatnonzero(train_labels == c))[:cap]
                  for c in np.unique(train_labels)]
        out.append((seed, np.sort(np.concatenate(picked))))
    return out


def frozen_arm(store, train_rows, test_rows, layers_preset, recipe, seed, args) -> dict:
    from featpipe.workflows.fit import TrainingSpec

    layers = store.provenance["presets"][layers_preset]
    train = store.load(layers, rows=train_rows)
    test = store.load(layers, rows=test_rows)
    folds = common.few_shot_cv(train.y)
    spec = TrainingSpec(recipe=recipe, cv=folds or 2, seed=seed)
    started = time.perf_counter()
    if folds is None:
        row = common.fit_fixed(train, test, spec, common.fixed_default(spec))
    else:
        row = common.run_spec(train, test, spec, args)
    return {"accuracy": row["accuracy"], "balanced_accuracy": row["balanced_accuracy"],
            "seconds": time.perf_counter() - started, "best_epoch": "",
            "detail": row["best_params"]}


def tuned_arm(pixels, train_pos, test_pos, changes, seed, store_path, args) -> dict:
    from featpipe.finetuning.data import labels_of, split_train_val
    from featpipe.finetuning.loop import train
    from featpipe.finetuning.predict import classify
    from featpipe.finetuning.spec import FinetuneSpec
    from featpipe.report.metrics import score_predictions

    spec = FinetuneSpec(model=args.model, image_size=args.image_size, epochs=args.epochs,
                        seed=seed, **SHARED, **changes)
    started = time.perf_counter()
    train_set, val_set = split_train_val(pixels.subset(train_pos), spec.val_split, seed)
    classes = pixels.class_names
    result = train(spec, train_set, val_set, class_names=classes, features=store_path)
    test_set = pixels.subset(test_pos)
    scored = classify(result.tuning.model, result.tuning.backbone.preprocessing, test_set)
    evaluation = score_predictions(labels_of(test_set, classes)[scored.positions],
                                   scored.predicted, classes)
    probe = result.probe or {}
    detail = f"val {result.best_val_accuracy:.3f}" + (
        f", probe agreement {probe['agreement']:.2f}" if probe else "")
    return {"accuracy": evaluation["accuracy"],
            "balanced_accuracy": evaluation["balanced_accuracy"],
            "seconds": time.perf_counter() - started, "best_epoch": result.best_epoch,
            "detail": detail}


@dataclass
class Prepared:
    """One dataset's pixels, frozen features and train/test positions."""

    dataset: str
    pixels: object
    store: object
    labels: np.ndarray
    train_pos: np.ndarray
    test_pos: np.ndarray


def prepare(dataset: str, manifest, args) -> Prepared:
    pixels = square_pixels(manifest, args)
    store = frozen_store(dataset, pixels, args)
    splits = np.array(pixels.splits)
    train_pos, test_pos = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if args.quick:
        train_pos, test_pos = train_pos[::4], test_pos[::4]
    harness.log(f"[{dataset}] {len(train_pos)} train / {len(test_pos)} test images")
    return Prepared(dataset, pixels, store, pixels.label_indices(), train_pos, test_pos)


def score_size(data: Prepared, size, args, rows: list, out) -> None:
    """Every arm on every seed's draw of ``size`` images per class."""
    index_of = dict(zip(data.store.ids.tolist(), data.store.index.tolist()))
    ids = data.pixels.ids
    n_seeds = args.all_seeds if size == ALL and args.all_seeds else args.seeds
    seeds = [args.seed + s for s in range(n_seeds)]
    done = {(r["dataset"], r["size"], int(r["seed"]), r["arm"]) for r in rows}
    if size != ALL and size > common.smallest_class(data.labels[data.train_pos]):
        harness.log(f"[{data.dataset}] skipping {size}/class: a class has fewer")
        return
    test_rows = [index_of[ids[i]] for i in data.test_pos]
    for seed, picked in draws(data.labels[data.train_pos], size, seeds, args.cap_all):
        chosen = data.train_pos[picked]
        train_rows = [index_of[ids[i]] for i in chosen]
        base = {"dataset": data.dataset, "similarity": common.similarity(data.dataset),
                "size": size, "seed": seed, "n_train": len(chosen)}
        for arm, (preset, recipe) in FROZEN_ARMS.items():
            if (data.dataset, size, seed, arm) in done:
                continue
            rows.append({**base, "arm": arm, **frozen_arm(
                data.store, train_rows, test_rows, preset, recipe, seed, args)})
        for arm, changes in TUNED_ARMS.items():
            if (data.dataset, size, seed, arm) in done:
                continue
            rows.append({**base, "arm": arm, **tuned_arm(
                data.pixels, chosen, data.test_pos, changes, seed, data.store.path, args)})
            harness.log(f"[{data.dataset}] {size}/class seed {seed} {arm}: "
                        f"{rows[-1]['accuracy']:.3f} ({rows[-1]['seconds']:.0f} s)")
            harness.write_csv(out.csv, rows, COLUMNS)  # every finished run survives a stop
        harness.write_csv(out.csv, rows, COLUMNS)


def _read_rows(path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["size"] = row["size"] if row["size"] == ALL else int(row["size"])
        for key in ("accuracy", "balanced_accuracy", "seconds"):
            row[key] = float(row[key])
    return rows


def _sizes(text: str) -> list:
    return [ALL if item.strip() == ALL else int(item) for item in text.split(",")]


def pivot(summary: list[dict], dataset: str) -> str:
    mine = [r for r in summary if r["dataset"] == dataset]
    sizes = list(dict.fromkeys(r["size"] for r in mine))
    lines = ["| arm | " + " | ".join(f"{s} / class" if s != ALL else "all" for s in sizes)
             + " | seconds per run |", "|---|" + "---|" * (len(sizes) + 1)]
    for arm in dict.fromkeys(r["arm"] for r in mine):
        cells = {r["size"]: r for r in mine if r["arm"] == arm}
        seconds = np.mean([r["seconds"] for r in mine if r["arm"] == arm])
        lines.append(f"| {arm} | " + " | ".join(
            f"{cells[s]['mean']:.3f} ± {cells[s]['std']:.3f}" if s in cells else "—"
            for s in sizes) + f" | {seconds:.1f} |")
    return "\n".join(lines)


def _size_order(size) -> float:
    return float("inf") if size == ALL else size


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in SUMMARY_KEYS), []).append(row)
    return [{**dict(zip(SUMMARY_KEYS, key)), "n_seeds": len(group),
             "mean": float(np.mean([r["accuracy"] for r in group])),
             "std": float(np.std([r["accuracy"] for r in group])),
             "seconds": float(np.mean([r["seconds"] for r in group]))}
            for key, group in sorted(groups.items(), key=lambda kv: _size_order(kv[0][3]))]


def plot(summary: list[dict], path) -> None:
    datasets = list(dict.fromkeys(r["dataset"] for r in summary))
    fig, axes = harness.figure(len(datasets), width=5.2, height=4.0)
    for ax, dataset in zip(axes, datasets):
        mine = [r for r in summary if r["dataset"] == dataset]
        sizes = list(dict.fromkeys(r["size"] for r in mine))
        for arm in dict.fromkeys(r["arm"] for r in mine):
            line = [next((r for r in mine if r["arm"] == arm and r["size"] == s), None)
                    for s in sizes]
            xs = [k for k, r in enumerate(line) if r is not None]
            ax.errorbar(xs, [line[k]["mean"] for k in xs], yerr=[line[k]["std"] for k in xs],
                        marker="o", capsize=3, label=arm,
                        linestyle="--" if arm.startswith("frozen") else "-")
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
        ax.set_xlabel("training images per class")
    harness.finish_panels(fig, axes, [f"{d} ({common.similarity(d)})" for d in datasets],
                          "test accuracy (mean ± std)", path, legend_size=6)


def main(argv: Sequence[str] | None = None) -> int:
    args = harness.parse_args(parser(), argv)
    if args.quick:
        args.seeds, args.epochs = min(args.seeds, 1), min(args.epochs, 2)
    out = harness.outputs(args, NAME)
    resuming = args.report_only or (args.resume and out.csv.exists())
    rows: list[dict] = _read_rows(out.csv) if resuming else []
    if not args.report_only:  # sizes outermost: a stopped run still covers every dataset
        prepared = [prepare(d, m, args) for d, m in args.manifests.items()]
        for size in _sizes(args.sizes):
            for data in prepared:
                score_size(data, size, args, rows, out)
    summary = summarize(rows)
    harness.write_csv(out.csv, rows, COLUMNS)
    plot(summary, out.png)
    cap = "" if args.cap_all is None else f" (at most {args.cap_all} per class, drawn per seed)"
    all_seeds = args.all_seeds or args.seeds
    notes = (f"Test accuracy, mean ± std (population) over {args.seeds} seeds ({all_seeds} for "
             "`all`; a single seed shows ± 0.000); `all` = the "
             f"whole training split{cap} (seeds change the fine-tuning's validation split, "
             f"initialisation and augmentation). Fine-tuning: {args.epochs} epochs for every "
             f"arm, {', '.join(f'{k}={v}' for k, v in SHARED.items())}; cosine schedule with "
             "warm-up, the best epoch by validation accuracy. Seconds: wall time per run "
             "(fine-tuning: decoding, training, validation and the test pass; frozen: the CV "
             "search and the test pass, extraction excluded as it is shared by both frozen "
             "arms).")
    tables = [f"## {d} ({common.similarity(d)} similarity)\n\n" + pivot(summary, d)
              for d in dict.fromkeys(r["dataset"] for r in summary)]
    header = [*harness.provenance("benchmarks.compare_finetune", args.argv),
              f"- Backbone: {args.model} at {args.image_size} px, pad; load average at the "
              f"end: {harness.format_load()}"]
    harness.write_page(out.md, "Comparison 8: frozen features vs fine-tuning", header,
                       [notes, *tables])
    print(f"wrote {out.csv}, {out.md}, {out.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
