"""Classical-stage speed: featpipe's default (fast) search vs a plain scikit-learn grid search.

The reference is what a scikit-learn user would write: ``GridSearchCV`` over
``StandardScaler -> LinearSVC`` (scikit-learn defaults), C in {1e-3, 1e-2, 1e-1, 1, 10}, the
same stratified shuffled folds, no caching. Against it, on the same training split and in the
same process, back to back: featpipe's ``fne`` recipe with ``--search grid`` (plain
GridSearchCV of the recipe) and with the default fast search, then the ``l2`` and
``linear-probe`` recipes with the fast search. Every arm is scored once on the test split.
Wall times include the final refit; the load average before each arm is recorded because the
machine is shared.

    python -m benchmarks.bench_search [--datasets fashion-mnist,tuxpaint] [--quick]
        [--arms plain,fne-grid,fne,l2,linear-probe] [--n-jobs 1]

Defaults: 5 folds, arms plain, fne-grid, fne, l2 (``--quick``: 3 folds, 8 training / 6 test
images per class, arms plain, fne, l2).
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

import numpy as np

from benchmarks import common, harness
from benchmarks.harness import Arm

NAME = "search"
MODULE = "benchmarks.bench_search"
PLAIN_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
HEADLINE = "fne"  # featpipe's default recipe and search
COLUMNS = ["dataset", "arm", "description", "n_train", "n_test", "n_features", "cv",
           "fit_seconds", "ratio_to_plain", "best_C", "n_fitted_C", "cv_accuracy",
           "test_accuracy", "points_vs_plain", "load_before"]


# An arm's run: (train, args) -> (fitted estimator, best C, CV score, n fitted C values)


def plain_search(train, args):
    """What a scikit-learn user writes: GridSearchCV(StandardScaler -> LinearSVC)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    folds = StratifiedKFold(common.cv_folds(args), shuffle=True, random_state=args.seed)
    search = GridSearchCV(make_pipeline(StandardScaler(), LinearSVC(random_state=args.seed)),
                          {"linearsvc__C": list(PLAIN_C)}, cv=folds, n_jobs=args.n_jobs)
    search.fit(train.X, train.y)
    return (search.best_estimator_, search.best_params_["linearsvc__C"], search.best_score_,
            len(PLAIN_C))


def featpipe_search(recipe: str, search: str) -> Callable:
    def run(train, args):
        from featpipe.workflows.fit import TrainingSpec, fit_features

        spec = TrainingSpec(recipe=recipe, cv=common.cv_folds(args), n_jobs=args.n_jobs,
                            seed=args.seed, search=search)
        result = fit_features(train, spec)
        return (result.best_estimator, result.best_params["clf__C"], result.best_score,
                len(result.cv_table))

    return run


ARMS = harness.arm_table((
    Arm("plain", "GridSearchCV(StandardScaler -> LinearSVC), C in 1e-3..10", plain_search),
    Arm("fne-grid", "featpipe fne, --search grid (GridSearchCV of the recipe)",
        featpipe_search("fne", "grid")),
    Arm("fne", "featpipe fne, default fast search", featpipe_search("fne", "fast")),
    Arm("l2", "featpipe l2, default fast search", featpipe_search("l2", "fast")),
    Arm("linear-probe", "featpipe linear-probe, default fast search (45 C values)",
        featpipe_search("linear-probe", "fast")),
))

# The linear probe (lbfgs up to 1000 iterations per C) takes minutes even on the --quick data.
DEFAULT_ARMS = ("plain", "fne-grid", "fne", "l2")
QUICK_ARMS = ("plain", "fne", "l2")


def run_arm(arm: Arm, split: common.Split, args) -> dict:
    measured = harness.measure(arm.run, split.train, args)
    estimator, best_C, cv_score, n_fitted = measured.value
    seconds, load = measured.seconds, harness.format_load(measured.load, digits=1)
    accuracy = float(np.mean(estimator.predict(split.test.X) == split.test.y))
    harness.log(f"[{split.dataset}] {arm.name}: {seconds:.1f} s, C={best_C:.3g}, "
               f"test {accuracy:.4f} (load {load})")
    return {"arm": arm.name, "description": arm.description, "n_train": len(split.train.y),
            "n_test": len(split.test.y), "n_features": split.train.X.shape[1],
            "cv": common.cv_folds(args), "fit_seconds": seconds, "best_C": float(best_C),
            "n_fitted_C": n_fitted, "cv_accuracy": float(cv_score), "test_accuracy": accuracy,
            "load_before": load}


def score_dataset(split: common.Split, args) -> list[dict]:
    rows = [run_arm(ARMS[name], split, args) for name in args.arm_names]
    plain = next((r for r in rows if r["arm"] == "plain"), None)
    for row in rows:
        if plain is not None:
            row["ratio_to_plain"] = row["fit_seconds"] / plain["fit_seconds"]
            row["points_vs_plain"] = 100 * (row["test_accuracy"] - plain["test_accuracy"])
    return rows


def headline(rows: list[dict]) -> str:
    """One line per dataset: the default search against the plain one, with the targets."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = {r["arm"]: r for r in rows if r["dataset"] == dataset}
        if "plain" not in mine or HEADLINE not in mine:
            continue
        fast = mine[HEADLINE]
        ratio_ok = "meets" if fast["ratio_to_plain"] <= 0.25 else "misses"
        accuracy_ok = "meets" if fast["points_vs_plain"] >= -1 else "misses"
        lines.append(f"- **{dataset}**: featpipe default (`fne`, fast search) took "
                     f"{fast['fit_seconds']:.1f} s vs {mine['plain']['fit_seconds']:.1f} s for "
                     f"the plain search: wall-time ratio **{fast['ratio_to_plain']:.3f}** "
                     f"({ratio_ok} the <= 0.25 target); test accuracy "
                     f"{fast['test_accuracy']:.4f} vs {mine['plain']['test_accuracy']:.4f} "
                     f"(**{fast['points_vs_plain']:+.1f} points**, {accuracy_ok} the "
                     "within-1-point target).")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None):
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--arms", default=None,
                   help=f"comma-separated arms to run (default: {','.join(DEFAULT_ARMS)}; "
                        f"with --quick {','.join(QUICK_ARMS)}; also: linear-probe)")
    p.add_argument("--n-jobs", type=int, dest="jobs", help="jobs of every arm (alias of --jobs)")
    args = harness.parse_args(p, argv)
    args.n_jobs = args.jobs
    args.arm_names = harness.choose_arms(args.arms, ARMS,
                                         QUICK_ARMS if args.quick else DEFAULT_ARMS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    rows = common.for_each_dataset(args, lambda split: score_dataset(split, args))
    csv_path, md_path, _ = harness.outputs(args, NAME)
    harness.write_csv(csv_path, rows, COLUMNS)
    notes = (f"All arms run back to back in one process on the same split, `--n-jobs "
             f"{args.n_jobs}`; `fit_seconds` is the whole search including the refit; "
             "`ratio_to_plain` = fit_seconds / plain arm's fit_seconds; `points_vs_plain` = "
             "test accuracy difference in percentage points; `n_fitted_C` = C values "
             "cross-validated; `load_before` = 1/5/15-min load average before the arm (the "
             "machine is shared, so absolute times vary; ratios come from one run).")
    table = harness.markdown_table(rows, [c for c in COLUMNS if c != "description"])
    arms = "\n".join(f"- `{a.name}`: {a.description}" for a in ARMS.values()
                     if a.name in args.arm_names)
    common.write_markdown(md_path, "Classical stage: fast search vs plain GridSearchCV",
                          [headline(rows), notes, arms, table], args, MODULE)
    print(f"wrote {csv_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
