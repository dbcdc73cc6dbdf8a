"""`featpipe info`: describe a feature store."""

from __future__ import annotations

from featpipe.cli.output import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a feature store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="verify the store (shapes, status vs failures, provenance, finite "
                        "values, checksums); exit 1 on any problem")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.store.reader import FeatureStore

    if args.check:
        return run_check(args)

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
    print(f"  preprocessing: {describe_preprocessing(prov.get('preprocessing') or {})}")
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


def run_check(args) -> int:
    from featpipe.store.check import check_store

    check = check_store(args.store)
    if args.json:
        print_json({"path": str(check.path), "ok": check.ok, "problems": check.problems,
                    "notes": check.notes})
    else:
        for problem in check.problems:
            print(f"{check.path}: problem: {problem}")
        for note in check.notes:
            print(f"{check.path}: note: {note}")
        print(f"{check.path}: " + ("check passed" if check.ok
                                   else f"{len(check.problems)} problem(s) found"))
    return 0 if check.ok else 1


def describe_preprocessing(prep: dict) -> str:
    """One line: resize mode and sizes, interpolation, normalisation.

    Examples
    --------
    >>> describe_preprocessing({"image_size": 128, "resize_size": 146, "mean": [0.5] * 3,
    ...                         "std": [0.5] * 3, "interpolation": "bicubic"})
    'crop: shorter side 146 px, centre 128 px (crop_pct 0.877), bicubic, mean 0.5/0.5/0.5, std 0.5/0.5/0.5'
    """
    if not prep:
        return "not recorded"
    size, mode = prep["image_size"], prep.get("resize_mode", "crop")
    if mode == "crop":
        geometry = (f"crop: shorter side {prep['resize_size']} px, centre {size} px "
                    f"(crop_pct {size / prep['resize_size']:.3f})")
    elif mode == "pad":
        geometry = f"pad: longer side {size} px, padded to {size}x{size} with {tuple(prep['fill'])}"
    else:
        geometry = f"squash: {size}x{size} px, aspect ratio ignored"
    stats = "/".join(f"{v:g}" for v in prep["mean"]), "/".join(f"{v:g}" for v in prep["std"])
    return f"{geometry}, {prep['interpolation']}, mean {stats[0]}, std {stats[1]}"
