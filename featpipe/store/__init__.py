"""The HDF5 feature store between the two stages: its layout (:mod:`featpipe.store.layout`, the
single source of truth), a writer for extraction and a reader for learning."""

from featpipe.store.reader import FeatureSet, FeatureStore
from featpipe.store.writer import StoreWriter

__all__ = ["FeatureSet", "FeatureStore", "StoreWriter"]
