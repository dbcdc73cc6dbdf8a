"""`featpipe fit`: tune and fit a classifier on a feature store."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
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
    p.add_argument("--n-jobs", type=int, default=None,
                   help="parallel jobs (default: the fast search uses one thread per core)")
    p.add_argument("--halving", action="store_true", help="HalvingGridSearchCV")
    p.add_argument("--search", default="fast", choices=["fast", "grid"],
                   help="fast: a warm-started C path (or one other classifier parameter's "
                        "values) with preprocessing once per fold (default); "
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
    p.add_argument("--cache-dir", default=None,
                   help="keep joblib's preprocessing cache in this private folder (it holds "
                        "pickles: yours only, never files from elsewhere); default: a "
                        "temporary folder removed after the search")
    p.add_argument("--report", default=None, help="folder for report.json/.md and plots")
    p.add_argument("--max-iter", type=int, default=None,
                   help="the classifier's iteration limit (default: the recipe's)")
    p.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="peak memory, e.g. 2GB: features that would not fit it in memory are "
                        "learned out of core (streaming SGD over batches of the store)")
    p.add_argument("--streaming", action="store_true", default=None,
                   help="always learn out of core (standardize, SGD hinge, alpha by validation)")
    p.add_argument("--dask", default=None, metavar="ADDRESS|local:N",
                   help="run the cross-validated search on a Dask cluster (joblib's backend)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N|auto",
                   help="where the search runs: cpu (NumPy, default) or a GPU (torch tensors "
                        "through scikit-learn's array API); auto: the GPU when present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def training_spec(args):
    """The typed :class:`~featpipe.workflows.fit.TrainingSpec` of `featpipe fit`'s flags."""
    from featpipe.cli.parsing import parse_grid_overrides, parse_layers, parse_reduce
    from featpipe.workflows.fit import TrainingSpec
    from featpipe.workflows.streaming import parse_size

    reduce = None  # the recipe's
    if args.reduce is not None:
        reduce = parse_reduce(args.reduce) or False  # "none" removes the recipe's reduction
    return TrainingSpec(
        recipe=args.recipe, layers=parse_layers(args.layers), normalize=args.normalize,
        discretize=args.discretize, reduce=reduce, classifier=args.classifier,
        grid=parse_grid_overrides(args.grid), cv=args.cv, scoring=args.scoring,
        n_jobs=args.n_jobs, search="halving" if args.halving else args.search, seed=args.seed,
        cache_dir=args.cache_dir, stats_from=args.stats_from, max_iter=args.max_iter,
        progress=not args.quiet and sys.stderr.isatty(),
        memory_budget=None if args.memory_budget is None else parse_size(args.memory_budget),
        streaming=args.streaming, dask=args.dask, device=args.device)


def run(args) -> int:
    if args.device != "cpu" and "scipy" not in sys.modules:  # read when scipy is imported
        from featpipe.classical.device import enable_array_api

        enable_array_api()
    from featpipe.cli import as_flags
    from featpipe.resources import return_freed_blocks_to_the_system
    from featpipe.workflows.fit import fit_store

    return_freed_blocks_to_the_system()  # fold copies come and go (featpipe.resources)
    spec = training_spec(args)
    outcome = fit_store(args.store, spec, out=args.out, test=args.test,
                        test_split=args.test_split, train_split=args.train_split,
                        report_dir=args.report)
    if outcome.streamed:
        print(f"note: {as_flags(outcome.streamed)}", file=sys.stderr)
    print(outcome.summary_line())
    note = (outcome.search.extra.get("convergence") or {}).get("note")
    if note:
        print(f"note: {as_flags(note)}", file=sys.stderr)
    if outcome.stats_from.get("transductive"):
        print("note: --stats-from all standardized with statistics of every row of the store, "
              "test rows included (transductive); the model and report record it",
              file=sys.stderr)
    return 0
