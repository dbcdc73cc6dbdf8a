"""featpipe: frozen pretrained-network features from many layers, learned with scikit-learn."""

__version__ = "0.1.0"

from featpipe.errors import FeatpipeError, UsageError  # noqa: E402

__all__ = ["FeatpipeError", "UsageError", "__version__"]
