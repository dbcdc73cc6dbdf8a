"""Stage 2: scikit-learn over stored features: array-API transformers, named recipes, and the
cross-validated search that tunes them; fitted pipelines persisted with skops."""
