"""Named image-classification data sets, decoded once into uint8 tensors, served as batches; the modules in the
order a training run uses them: ``registry`` (the named data sets, ``DATASETS``), ``sources`` (finding their files:
``resolve_source``), ``decode`` (decoding a split once into ``ImageArrays``, the on-disk decode cache, the pixel
convention), ``splits`` (held-out split, subsets, classes, source/target parts: ``get_datasets``), ``seeding`` (the
seeded random streams), ``loader`` (``DeviceLoader``: batches made on the device from a whole decoded split) and
``streaming`` (``StreamingLoader``: batches from webdataset tar shards, for ImageNet-size data). This package
re-exports the API of the first four, so that ``from repro.data import get_datasets, load_split, ...`` works; the
loaders are imported from their modules (``from repro.data.loader import DeviceLoader``)."""
from .decode import (CACHE_VERSION, IMAGE_EXTENSIONS, ImageArrays, content_checksum, default_cache_dir, denormalize,
                     fingerprint, load_split, local_split_size, normalize)
from .registry import DATASETS, DatasetInfo, get_info, register_dataset
from .sources import EMBEDDED_DIR, DataError, DatasetNotFoundError, Source, download_command, resolve_source
from .splits import TARGET_SIZE, TRAIN_PARTS, balanced_subset, carve_train_part, get_datasets, keep_classes, split_heldout

__all__ = [
    "CACHE_VERSION", "DATASETS", "EMBEDDED_DIR", "IMAGE_EXTENSIONS", "TARGET_SIZE", "TRAIN_PARTS",
    "DataError", "DatasetInfo", "DatasetNotFoundError", "ImageArrays", "Source",
    "balanced_subset", "carve_train_part", "content_checksum", "default_cache_dir", "denormalize", "download_command",
    "fingerprint", "get_datasets", "get_info", "keep_classes", "load_split", "local_split_size", "normalize",
    "register_dataset", "resolve_source", "split_heldout",
]
