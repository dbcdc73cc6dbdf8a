"""featpipe: frozen pretrained-network features from many layers, learned with scikit-learn."""

__version__ = "0.1.0"

from featpipe.errors import FeatpipeError, UsageError  # noqa: E402

_LAZY = {
    "FrozenFeatureClassifier": "featpipe.workflows.estimator",
    "FeatureStore": "featpipe.store",
    "ExtractionSpec": "featpipe.spec",
    "create_backbone": "featpipe.models",
    "list_backbones": "featpipe.models",
    "build_recipe": "featpipe.classical.recipes",
    "Reduction": "featpipe.classical.recipes",
    "SearchConfig": "featpipe.classical.search",
    "TrainingSpec": "featpipe.workflows.fit",
    "FinetuneSpec": "featpipe.finetuning.spec",
    "finetune": "featpipe.finetuning.run",
}

__all__ = ["FeatpipeError", "UsageError", "__version__", *_LAZY]


def __getattr__(name):
    """Import the heavy parts (torch, h5py, sklearn) only when they are used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featpipe' has no attribute {name!r}")
