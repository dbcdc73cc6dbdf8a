"""What each `featpipe` sub-command does, given its parsed arguments (see :mod:`featpipe.cli`)."""

from __future__ import annotations

import csv
import io
import sys
import tempfile
from pathlib import Path


from featpipe.cli import print_json
from featpipe.errors import FeatpipeError, UsageError

PREDICTION_FIELDS = ("id", "prediction", "error")


def backbones(args) -> int:
    from featpipe.backbones import list_backbones

    for name in list_backbones():
        print(name)
    return 0


def layers(args) -> int:
    from featpipe.backbones import DEFAULT_BACKBONE, create_backbone
    from featpipe.capture import PRESETS, list_layers, resolve_layers

    backbone = create_backbone(args.model or DEFAULT_BACKBONE, weights=args.weights,
                               pretrained=not args.no_pretrained, image_size=args.image_size)
    infos = list_layers(backbone, image_size=args.image_size)
    dims = {info.name: info.pooled_dim(args.pool) for info in infos}
    presets = {name: resolve_layers(backbone, name) for name in PRESETS}
    if args.json:
        print_json({"model": backbone.name, "image_size": backbone.preprocessing.image_size,
                    "layers": [{"name": i.name, "shape": list(i.shape), "dim": dims[i.name]}
                               for i in infos],
                    "presets": presets})
        return 0
    print(f"{backbone.name} at {backbone.preprocessing.image_size} px "
          f"(pooled dims for --pool {args.pool})")
    width = max(len(info.name) for info in infos)
    for info in infos:
        tags = [name for name, members in presets.items() if info.name in members]
        shape = "x".join(map(str, info.shape))
        print(f"  {info.name:<{width}}  {shape:>14}  {dims[info.name]:>7}  {' '.join(tags)}")
    for name, members in presets.items():
        print(f"preset {name}: {len(members)} layers, {sum(dims[m] for m in members)} features")
    return 0


def extract(args) -> int:
    from featpipe.backbones import DEFAULT_BACKBONE
    from featpipe.extract import extract as run_extract

    result = run_extract(
        args.source, args.out, model=args.model or DEFAULT_BACKBONE, weights=args.weights,
        pretrained=not args.no_pretrained, layers=args.layers, pool=args.pool,
        token_pool=args.token_pool, image_size=args.image_size, batch_size=args.batch_size,
        workers=args.workers, device=args.device, dtype=args.dtype, amp=args.amp,
        channels_last=args.channels_last, compression=args.compression,
        shard=_parse_shard(args.shard), overwrite=args.overwrite, force=args.force,
        progress=not args.quiet)
    resumed = " (resumed)" if result.resumed else ""
    print(f"wrote {result.path}: {result.n_images} images, {result.n_failed} failed{resumed}, "
          f"{result.images_per_second:.1f} img/s")
    return 0


def _parse_shard(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    try:
        k, n = (int(part) for part in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like K/N (e.g. 0/4), got {spec!r}") from None
    return k, n


def info(args) -> int:
    from featpipe.store import FeatureStore

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


def recipes(args) -> int:
    from featpipe.recipes import RECIPES

    for recipe in RECIPES.values():
        grid = ", ".join(f"{k}: {len(v)} values" for k, v in recipe.default_grid.items())
        print(f"{recipe.name:<13} {recipe.summary}  [grid: {grid or 'none'}]")
    return 0


def fit(args) -> int:
    from featpipe.training import TrainingSpec, fit_store

    spec = TrainingSpec(
        recipe=args.recipe, layers=args.layers, normalize=args.normalize,
        discretize=args.discretize, reduce=args.reduce, classifier=args.classifier,
        grid=args.grid, cv=args.cv, scoring=args.scoring, n_jobs=args.n_jobs,
        halving=args.halving, seed=args.seed, cache_dir=args.cache_dir, search=args.search,
        stats_from=args.stats_from)
    outcome = fit_store(args.store, spec, out=args.out, test=args.test,
                        test_split=args.test_split, train_split=args.train_split,
                        report_dir=args.report)
    print(outcome.summary_line())
    if outcome.stats_from.get("transductive"):
        print("note: --stats-from all standardized with statistics of every row of the store, "
              "test rows included (transductive); the model and report record it",
              file=sys.stderr)
    return 0


def predict(args) -> int:
    from featpipe.training import predict_source

    predictions = predict_source(args.model, args.source, trusted=_trust(args.trust),
                                 batch_size=args.batch_size, device=args.device)
    _write_predictions(predictions, args.out)
    return 0


def _trust(values: list[str]) -> bool | list[str]:
    if "all" in values:
        return True
    return [t for value in values for t in value.split(",") if t]


def _write_predictions(predictions: dict, out: str | None) -> None:
    """CSV with one row per input: id, prediction, error, and p_<class> when available."""
    columns = list(PREDICTION_FIELDS) + [f"p_{c}" for c in predictions.get("proba_classes", [])]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in predictions["rows"]:
        writer.writerow([row.get(c, "") for c in columns])
    if out is None:
        sys.stdout.write(buffer.getvalue())
        return
    path = Path(out)
    if not path.parent.is_dir():
        raise FeatpipeError(f"output folder {path.parent} does not exist")
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(buffer.getvalue())
    Path(tmp.name).replace(path)
    n_failed = sum(1 for row in predictions["rows"] if row.get("error"))
    print(f"wrote {path}: {len(predictions['rows']) - n_failed} predictions, {n_failed} failed")


def evaluate(args) -> int:
    from featpipe.training import evaluate_store

    evaluation = evaluate_store(args.model, args.store, split=args.split,
                                trusted=_trust(args.trust), report_dir=args.report)
    if args.json:
        print_json(evaluation)
    else:
        print(f"accuracy {evaluation['accuracy']:.4f}  balanced accuracy "
              f"{evaluation['balanced_accuracy']:.4f}  on {evaluation['n_samples']} images")
    return 0



