"""`featpipe evaluate`: score a fitted model on a labelled store (a fine-tuning run on images)."""

from __future__ import annotations

from featpipe.cli.output import add_source_options, parse_trust, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a fitted model on a labelled feature store, or a "
                                        "fine-tuning run on labelled images")
    p.add_argument("model", help="model file (.skops) or fine-tuning RUN_DIR")
    p.add_argument("store", help="feature store (.h5); for a RUN_DIR: images (folder, manifest)")
    p.add_argument("--split", default=None, help="evaluate only this split of the store")
    p.add_argument("--report", default=None)
    p.add_argument("--trust", action="append", default=[])
    p.add_argument("--json", action="store_true")
    add_source_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.workflows.evaluate import evaluate_store

    evaluation = evaluate_store(args.model, args.store, split=args.split,
                                trusted=parse_trust(args.trust), report_dir=args.report,
                                follow_links=args.follow_links,
                                allow_outside=args.allow_outside)
    if args.json:
        print_json(evaluation)
    else:
        print(f"accuracy {evaluation['accuracy']:.4f}  balanced accuracy "
              f"{evaluation['balanced_accuracy']:.4f}  on {evaluation['n_samples']} images")
    return 0
