"""`featpipe info`: describe a feature store."""

from __future__ import annotations

from featpipe.cli.output import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a feature store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.store.reader import FeatureStore

    store = FeatureStore.open(args.store, allow_partial=True)
    summary = store.summary()
    if args.json:
        print_json(summary)
        return 0
    prov = summary["provenance"]
    state = "complete" if summary["complete"] else f"UNFINISHED ({summary['n_pending']} pending)"
    print(f"{summary['path']}: {summary['n_images']} images, {summary['n_features']} features "
          f"in {len(summary['layers'])} layers, {summary['n_failed']} failed, {state}")
    print(f"  backbone {prov['model']} ({prov['weights']}), {prov['image_size']} px, "
          f"pool {prov['pool']}, {prov['dtype']}, created {prov['created']}")
    print("  layers: " + ", ".join(f"{n} ({d})" for n, d in summary["layers"].items()))
    if summary["classes"]:
        print("  classes: " + ", ".join(f"{n} ({c})" for n, c in summary["classes"].items()))
    if "splits" in summary:
        print("  splits: " + ", ".join(f"{n} ({c})" for n, c in summary["splits"].items()))
    for failure in summary["failures"][:10]:
        print(f"  failed: {failure['id']}: {failure['reason']}")
    if summary["n_failed"] > 10:
        print(f"  ... {summary['n_failed'] - 10} more failures (see --json)")
    return 0
