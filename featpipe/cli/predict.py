"""`featpipe predict`: classes of images or of a store's rows, as CSV."""

from __future__ import annotations

import csv
import io
import sys

from featpipe.cli.output import parse_trust
from featpipe.fileio import atomic_write, checked_output

PREDICTION_FIELDS = ("id", "prediction", "error")


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict classes of images or of a feature store")
    p.add_argument("model", help="model file (.skops) or fine-tuning RUN_DIR")
    p.add_argument("source", help="feature store (.h5) or images (folder, manifest, list)")
    p.add_argument("--out", default=None, help="CSV file (default: stdout)")
    p.add_argument("--trust", action="append", default=[],
                   help="trust these types in the model file (or 'all')")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.workflows.predict import predict_source

    if args.out is not None:
        checked_output(args.out)  # before the work, not after it
    predictions = predict_source(args.model, args.source, trusted=parse_trust(args.trust),
                                 batch_size=args.batch_size, device=args.device)
    _write_predictions(predictions, args.out)
    return 0


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
    path = atomic_write(checked_output(out), buffer.getvalue())
    n_failed = sum(1 for row in predictions["rows"] if row.get("error"))
    print(f"wrote {path}: {len(predictions['rows']) - n_failed} predictions, {n_failed} failed")
