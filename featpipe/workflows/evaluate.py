"""`featpipe evaluate`'s workflow: score a model on a labelled store with matching provenance."""

from __future__ import annotations

from featpipe.errors import FeatpipeError
from featpipe.store.reader import FeatureStore
from featpipe.workflows.data import align_labels, load_compatible


def evaluate_store(model_path, store_path, *, split=None, trusted=False,
                   report_dir=None, **source_options) -> dict:
    """`featpipe evaluate`: score a model on a labelled store with matching provenance, or a
    fine-tuning run directory on labelled images (``store_path`` is then an image source,
    opened with ``source_options``: ``follow_links``, ``allow_outside``)."""
    from featpipe.classical.persist import load_model
    from featpipe.finetuning.predict import evaluate_run, is_run_dir
    from featpipe.report.metrics import evaluate
    from featpipe.report.writer import write_report
    from featpipe.workflows.predict import images_for_run

    if is_run_dir(model_path):
        evaluation = evaluate_run(model_path, images_for_run(store_path, split, **source_options))
        if report_dir is not None:
            write_report(report_dir, search=None, evaluation=evaluation,
                         meta={"model": str(model_path), "images": str(store_path)})
        return evaluation
    pipeline, provenance, training = load_model(model_path, trusted=trusted)
    store = FeatureStore.open(store_path)
    data = load_compatible(store, provenance, provenance["layers"], split=split)
    data = align_labels(data, list(training["class_names"]))
    if len(data.y) == 0:
        raise FeatpipeError(f"{store.path.name} has no images to evaluate")
    evaluation = evaluate(pipeline, data.X, data.y, list(training["class_names"]))
    evaluation["n_samples"] = int(len(data.y))
    if report_dir is not None:
        write_report(report_dir, search=None, evaluation=evaluation,
                     meta={"model": str(model_path), "store": str(store.path)})
    return evaluation

