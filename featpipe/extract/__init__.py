"""Stage 1: images -> backbone -> pooled activations of many layers -> a resumable HDF5 store,
with decoding in worker processes and a background writer."""

from featpipe.extract.run import ExtractionResult, extract

__all__ = ["ExtractionResult", "extract"]
