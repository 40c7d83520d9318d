"""Data sets, their decoding, the prepared format, and the deterministic batch stream.

    base.py              the DataSet protocol, ImageData, split_indices, is_image_shape
    images.py            decoding, 8-bit conversion, centre crop and resize, grids
    folder.py            ImageFolder, and open_images (folder | LMDB | prepared at data.root)
    labels.py            a folder's labels: dataset.json or one subfolder per class
    lmdb_set.py          LSUN's LMDB directories
    prepared.py          the `ganqp prepare` format: reader and writer
    torchvision_sets.py  cifar10, mnist
    digits.py, ring8.py  the bundled data sets
    stacked_digits.py    three digits as R, G, B (Stacked MNIST's 1,000 modes)
    stream.py            StreamSampler, Batches
    validate.py          validate_data: every data.* key, before any work
"""

from ganqp_cli.data.base import (
    HOLDOUT_SEED,
    ON_ERROR,
    DataSet,
    ImageData,
    Table,
    check_labels,
    is_image_shape,
    replacement_rows,
    split_indices,
)
from ganqp_cli.data.digits import Digits
from ganqp_cli.data.folder import ImageFolder, open_images, root_kind
from ganqp_cli.data.images import (
    IMAGE_EXTS,
    RESIZE_METHOD,
    Unreadable,
    decode_bytes,
    image_grid,
    list_images,
    read_image,
    square_resize,
    to_8bit,
    to_uint8,
)
from ganqp_cli.data.labels import LABEL_FILE, folder_labels
from ganqp_cli.data.prepared import PreparedImages, is_prepared, read_meta
from ganqp_cli.data.ring8 import Ring8
from ganqp_cli.data.stacked_digits import StackedDigits
from ganqp_cli.data.stream import Batches, StreamSampler
from ganqp_cli.data.torchvision_sets import Torchvision, open_torchvision
from ganqp_cli.data.validate import validate_data

__all__ = [
    "HOLDOUT_SEED", "IMAGE_EXTS", "LABEL_FILE", "ON_ERROR", "RESIZE_METHOD", "Batches",
    "DataSet", "Digits", "ImageData", "ImageFolder", "PreparedImages", "Ring8", "StackedDigits",
    "StreamSampler", "Table", "Torchvision", "Unreadable", "check_labels", "decode_bytes",
    "folder_labels", "image_grid", "is_image_shape", "is_prepared", "list_images",
    "open_images", "open_torchvision", "read_image", "read_meta", "replacement_rows",
    "root_kind", "split_indices", "square_resize", "to_8bit", "to_uint8", "validate_data",
]
