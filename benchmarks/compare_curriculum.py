"""Comparison 9, curriculum learning (issue 12): does training easy-to-hard help fine-tuning?

The lectures' claim: "curriculum learning with transfer scoring helps" (Hacohen & Weinshall,
ICML 2019). On a small-data, low-similarity target — a Fashion-MNIST subset (``--per-class``
training and ``--val-per-class`` validation images per class from the training split,
``--test-per-class`` from the test split; one seeded draw, the same for every arm) — every arm
fine-tunes the same network (Lite0, ``pad`` at ``--image-size``, the top stage and the head:
``freeze=4`` of 5 stages) for the same number of optimizer steps, through
``featpipe.finetuning.train`` with a ``CurriculumPlan`` as its ``train_sampler``:

- ``constant``: ordinary training (a fresh shuffle each epoch);
- for two pacing functions (exponential: start 0.2, x1.9 every 10 % of the steps; linear:
  start 0.2, all of the data at half of the steps), class-balanced prefixes:
  ``transfer`` (curriculum from out-of-fold ridge-probe confidences on the pretrained last
  layer), ``self-taught`` (curriculum from out-of-fold confidences of the same network
  fine-tuned briefly without curriculum: 2 epochs, 3 folds), ``random`` (random scores: the
  control), ``anti`` (transfer scores, hardest first).

Seeds change the network's head initialisation, augmentation, batch order and the random and
transfer scores' folds; the self-taught scores are computed once (seed ``--seed``). Settings
are fixed in advance (those of comparison 8); the test split is scored once per run, never used
to choose anything. Each arm is compared with ``constant`` by a paired t-test over the seeds.

    python -m benchmarks.compare_curriculum [--per-class 15] [--seeds 5] [--epochs 5]
        [--image-size 64] [--quick]
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from benchmarks import harness
from benchmarks.compare_finetune import SHARED, square_pixels

NAME = "compare_curriculum"
DATASET = "fashion-mnist"
N_CLASSES = 10
PACINGS = ("exponential", "linear")
SCORED_ARMS = {  # name -> (scoring, ordering)
    "transfer": ("transfer", "curriculum"),
    "self-taught": ("self-taught", "curriculum"),
    "random": ("random", "curriculum"),
    "anti (transfer)": ("transfer", "anti"),
}
COLUMNS = ["arm", "scoring", "ordering", "pacing", "seed", "accuracy", "balanced_accuracy",
           "best_epoch", "best_val_accuracy", "steps", "seconds"]
CURVE_COLUMNS = ["arm", "pacing", "seed", "epoch", "train_loss", "val_accuracy",
                 "pacing_fraction"]


def parser():
    p = harness.parser(__doc__.splitlines()[0])
    p.set_defaults(datasets=DATASET, image_size=64)
    p.add_argument("--per-class", type=int, default=15, help="training images per class")
    p.add_argument("--val-per-class", type=int, default=3)
    p.add_argument("--test-per-class", type=int, default=15)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--freeze", type=int, default=4, help="frozen stages of Lite0's 5")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the page and plot from the CSVs of an earlier (or stopped) run")
    return p


def draw(pixels, args):
    """Training, validation and test images: a seeded per-class draw, the same for every arm."""
    rng = np.random.default_rng(args.seed)
    labels, splits = np.array(pixels.labels), np.array(pixels.splits)
    picked = {"train": [], "val": [], "test": []}
    for name in pixels.class_names:
        pool = rng.permutation(np.flatnonzero((labels == name) & (splits == "train")))
        picked["train"] += pool[:args.per_class].tolist()
        picked["val"] += pool[args.per_class:args.per_class + args.val_per_class].tolist()
        test = rng.permutation(np.flatnonzero((labels == name) & (splits == "test")))
        picked["test"] += test[:args.test_per_class].tolist()
    return {part: pixels.subset(np.sort(rows)) for part, rows in picked.items()}


def pacing_for(name: str, total_steps: int):
    from featpipe.curriculum.pacing import Pacing

    if name == "exponential":
        return Pacing("exponential", start=0.2, inc=1.9, step_length=max(1, total_steps // 10))
    return Pacing("linear", start=0.2, ramp=max(1, total_steps // 2))


def transfer_scores(train_set, seed: int, args) -> np.ndarray:
    from featpipe.curriculum.transfer import TransferScorer
    from featpipe.extract import extract

    path = args.features_dir / (f"curriculum-{DATASET}-{args.per_class}-{args.seed}-"
                                f"{args.model}-{args.image_size}-last.h5")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        extract(train_set, path, layers="last", model=args.model, image_size=args.image_size,
                resize="pad", progress=False)
    return TransferScorer(store=path, cv=min(5, args.per_class)).score(train_set, seed=seed)


def scores_for(scoring: str, train_set, seed: int, spec, args, cache: dict) -> np.ndarray:
    from featpipe.curriculum.scoring import RandomScorer, SelfTaughtScorer
    from featpipe.workflows.curriculum import self_taught_spec, self_taught_trainer

    key = (scoring, args.seed if scoring == "self-taught" else seed)
    if key not in cache:
        started = time.perf_counter()
        if scoring == "transfer":
            cache[key] = transfer_scores(train_set, seed, args)
        elif scoring == "random":
            cache[key] = RandomScorer().score(train_set, seed=seed)
        else:
            trainer = self_taught_trainer(self_taught_spec(spec), workers=0)
            cache[key] = SelfTaughtScorer(trainer, cv=min(3, args.per_class)).score(
                train_set, seed=args.seed)
        harness.log(f"scores {key}: {time.perf_counter() - started:.0f} s, mean "
                    f"{cache[key].mean():.3f}")
    return cache[key]


def run_arm(parts, spec, plan) -> tuple[dict, list[dict]]:
    from featpipe.finetuning.data import labels_of
    from featpipe.finetuning.loop import train
    from featpipe.finetuning.predict import classify
    from featpipe.report.metrics import score_predictions

    started = time.perf_counter()
    classes = parts["train"].class_names
    result = train(spec, parts["train"], parts["val"], class_names=classes, train_sampler=plan,
                   workers=0)
    scored = classify(result.tuning.model, result.tuning.backbone.preprocessing, parts["test"])
    evaluation = score_predictions(labels_of(parts["test"], classes)[scored.positions],
                                   scored.predicted, classes)
    row = {"accuracy": evaluation["accuracy"],
           "balanced_accuracy": evaluation["balanced_accuracy"],
           "best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
           "seconds": time.perf_counter() - started}
    return row, [r for r in result.history if r["epoch"] > 0]


def arms(total_steps: int):
    """(arm name, pacing name, scoring, ordering, Pacing or None) for every arm."""
    yield "constant", "constant", None, None, None
    for pacing in PACINGS:
        for name, (scoring, ordering) in SCORED_ARMS.items():
            yield name, pacing, scoring, ordering, pacing_for(pacing, total_steps)


def run(args, out) -> tuple[list[dict], list[dict], dict]:
    from featpipe.curriculum.sampler import CurriculumPlan
    from featpipe.finetuning.spec import FinetuneSpec

    pixels = square_pixels(args.manifests[DATASET], args)
    parts = draw(pixels, args)
    spec = FinetuneSpec(model=args.model, image_size=args.image_size, epochs=args.epochs,
                        freeze=args.freeze, **SHARED)
    total_steps = args.epochs * math.ceil(len(parts["train"]) / spec.batch_size)
    harness.log(f"{len(parts['train'])} train / {len(parts['val'])} val / "
                f"{len(parts['test'])} test images; {total_steps} steps per run")
    rows, curves, cache = [], [], {}
    for seed in range(args.seed, args.seed + args.seeds):
        for arm, pacing_name, scoring, ordering, pacing in arms(total_steps):
            plan = None
            if pacing is not None:
                scores = scores_for(scoring, parts["train"], seed, spec, args, cache)
                plan = CurriculumPlan(scores, pacing, spec.batch_size, ordering=ordering)
            row, history = run_arm(parts, spec.replace(seed=seed), plan)
            base = {"arm": arm, "pacing": pacing_name, "seed": seed}
            rows.append({**base, "scoring": scoring or "", "ordering": ordering or "",
                         "steps": total_steps, **row})
            curves += [{**base, "pacing_fraction": 1.0, **h} for h in history]
            harness.log(f"seed {seed} {pacing_name:<11} {arm:<16} test "
                        f"{row['accuracy']:.3f} ({row['seconds']:.0f} s)")
            harness.write_csv(out.csv, rows, COLUMNS)  # partial results survive a stop
            harness.write_csv(out.csv.with_name(f"{NAME}_curves.csv"), curves, CURVE_COLUMNS)
    sizes = {"train": len(parts["train"]), "val": len(parts["val"]),
             "test": len(parts["test"]), "steps": total_steps}
    return rows, curves, sizes


def _read_run(out, args) -> tuple[list[dict], list[dict], dict]:
    """The rows and curves of the CSVs a run wrote (numbers parsed), and the run's sizes."""
    import csv

    def read(path, ints, floats):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            row.update({k: int(row[k]) for k in ints if row.get(k) not in (None, "")})
            row.update({k: float(row[k]) for k in floats if row.get(k) not in (None, "")})
        return rows

    rows = read(out.csv, ("seed", "best_epoch", "steps"),
                ("accuracy", "balanced_accuracy", "best_val_accuracy", "seconds"))
    curves = read(out.csv.with_name(f"{NAME}_curves.csv"), ("seed", "epoch"),
                  ("train_loss", "val_accuracy", "pacing_fraction"))
    n_arms = 1 + len(PACINGS) * len(SCORED_ARMS)
    complete = {s for s in {r["seed"] for r in rows}
                if sum(r["seed"] == s for r in rows) == n_arms}
    if len(complete) < len({r["seed"] for r in rows}):
        harness.log(f"a stopped run: only the seeds with every arm count ({sorted(complete)})")
    rows = [r for r in rows if r["seed"] in complete]
    curves = [c for c in curves if c["seed"] in complete]
    sizes = {"train": args.per_class * N_CLASSES, "val": args.val_per_class * N_CLASSES,
             "test": args.test_per_class * N_CLASSES, "steps": rows[0]["steps"]}
    return rows, curves, sizes


def compare(rows: list[dict]) -> list[dict]:
    """Mean ± std test accuracy per arm, and the paired t-test against constant (same seeds)."""
    from scipy.stats import ttest_rel

    def accuracy(arm, pacing):
        mine = sorted((r for r in rows if r["arm"] == arm and r["pacing"] == pacing),
                      key=lambda r: r["seed"])
        return {r["seed"]: r["accuracy"] for r in mine}

    baseline = accuracy("constant", "constant")
    table = []
    for arm, pacing in dict.fromkeys((r["arm"], r["pacing"]) for r in rows):
        values = accuracy(arm, pacing)
        seeds = sorted(set(values) & set(baseline))
        line = {"arm": arm, "pacing": pacing, "n_seeds": len(values),
                "mean": float(np.mean(list(values.values()))),
                "std": float(np.std(list(values.values()), ddof=1)) if len(values) > 1 else
                float("nan")}
        if arm != "constant" and len(seeds) > 1:
            diff = np.array([values[s] - baseline[s] for s in seeds])
            line["diff"] = float(diff.mean())
            # equal differences on every seed: no spread, the t-test is undefined
            line["p"] = float(ttest_rel([values[s] for s in seeds],
                                        [baseline[s] for s in seeds]).pvalue) \
                if np.ptp(diff) > 1e-4 else float("nan")
        table.append(line)
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| arm | pacing | seeds | test accuracy | − constant (paired) | p (paired t) |",
             "|---|---|---|---|---|---|"]
    for t in table:
        diff = f"{t['diff']:+.3f}" if "diff" in t else "—"
        p = "—" if "p" not in t else f"{t['p']:.3f}" if np.isfinite(t["p"]) else "n/a (no spread)"
        lines.append(f"| {t['arm']} | {t['pacing']} | {t['n_seeds']} | {t['mean']:.3f} ± "
                     f"{t['std']:.3f} | {diff} | {p} |")
    return "\n".join(lines)


def verdict(table: list[dict]) -> str:
    transfer = [t for t in table if t["arm"] == "transfer"]
    better = [t for t in transfer if t.get("diff", 0) > 0 and t.get("p", 1) < 0.05]
    worse = [t for t in transfer if t.get("diff", 0) < 0 and t.get("p", 1) < 0.05]  # nan: no
    words = ", ".join(f"{t['pacing']} {t['diff']:+.3f} (p={t['p']:.2f})" for t in transfer
                      if "diff" in t)
    if better and not worse:
        claim = "holds here: curriculum with transfer scoring beat constant pacing"
    elif worse:
        claim = "does not hold here: curriculum with transfer scoring did worse than constant"
    else:
        claim = ("is not supported here: curriculum with transfer scoring was not "
                 "distinguishable from constant pacing")
    return f"**The claim {claim}** (transfer vs constant, paired over seeds: {words})."


def plot(curves: list[dict], path) -> None:
    fig, axes = harness.figure(3, width=4.6, height=3.8)
    for ax, pacing in zip(axes, PACINGS):
        for arm in ["constant", *SCORED_ARMS]:
            mine = [c for c in curves if c["arm"] == arm and
                    c["pacing"] in (pacing, "constant")]
            epochs = sorted({c["epoch"] for c in mine})
            if epochs:
                ax.plot(epochs, [np.mean([c["val_accuracy"] for c in mine if c["epoch"] == e])
                                 for e in epochs], marker="o", markersize=3, label=arm,
                        linestyle="--" if arm == "constant" else "-")
        ax.set_xlabel("epoch")
    for pacing in PACINGS:
        mine = [c for c in curves if c["pacing"] == pacing]
        epochs = sorted({c["epoch"] for c in mine})
        axes[2].plot(epochs, [np.mean([c["pacing_fraction"] for c in mine if c["epoch"] == e])
                              for e in epochs], marker="o", label=pacing)
    axes[2].plot([], [], linestyle="--", label="constant (1.0)")
    axes[2].set_xlabel("epoch")
    axes[0].legend(fontsize=7, loc="lower right")
    harness.finish_panels(fig, axes, ["validation accuracy, exponential pacing",
                                      "validation accuracy, linear pacing",
                                      "pacing: fraction in use (epoch's last step)"],
                          "mean over seeds", path)


def main(argv: Sequence[str] | None = None) -> int:
    args = harness.parse_args(parser(), argv)
    if args.quick:
        args.per_class, args.val_per_class, args.test_per_class = 4, 2, 3
        args.seeds, args.epochs = 2, 2
    out = harness.outputs(args, NAME)
    if args.report_only:
        rows, curves, sizes = _read_run(out, args)
    else:
        rows, curves, sizes = run(args, out)
    table = compare(rows)
    plot(curves, out.png)
    notes = (f"Fashion-MNIST: {sizes['train']} training, {sizes['val']} validation (best "
             f"epoch), {sizes['test']} test images (10 classes); {args.epochs} epochs = "
             f"{sizes['steps']} optimizer steps for every arm; "
             f"{len({r['seed'] for r in rows})} seeds; fine-tuning "
             f"freeze={args.freeze}, {', '.join(f'{k}={v}' for k, v in SHARED.items())} "
             "(val_split applies to self-taught scoring's own runs). Test accuracy mean ± std "
             "(sample) over seeds; the difference to constant is paired by seed.")
    header = [*harness.provenance(f"benchmarks.{NAME}", args.argv),
              f"- Backbone: {args.model} at {args.image_size} px, pad; load average at the "
              f"end: {harness.format_load()}"]
    harness.write_page(out.md, "Comparison 9: curriculum learning", header,
                       [notes, "## Test accuracy\n\n" + markdown(table), verdict(table)])
    print(f"wrote {out.csv}, {out.md}, {out.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
