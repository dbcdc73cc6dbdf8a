"""Scale-out on an existing Dask cluster: sharded extraction merged into one store, and the
cross-validated search through joblib's Dask backend."""
