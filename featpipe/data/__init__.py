"""Images in: sources (folder, manifest, file list, IDX, arrays) become an ImageSet, and each input
is decoded to RGB by fixed rules, with broken files recorded as failures instead of crashing."""

from featpipe.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb
from featpipe.data.imageset import ImageSet
from featpipe.data.sources import (
    IMAGE_EXTENSIONS,
    from_arrays,
    from_file_list,
    from_folder,
    from_idx,
    from_manifest,
    open_source,
)

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageDecodeError", "ImageSet",
           "from_arrays", "from_file_list", "from_folder", "from_idx", "from_manifest",
           "load_rgb", "open_source"]
