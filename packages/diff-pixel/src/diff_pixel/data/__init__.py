"""Deterministic, resumable image data: digits, photo crops and user folders (nothing downloads)."""

from diff_pixel.data.digits import DIGITS_TEST_SIZE, digits, upsample_matrix
from diff_pixel.data.folder import IMAGE_EXTENSIONS, RandomCropSource, image_folder
from diff_pixel.data.loader import ArraySource, Augment, Loader, Source, random_flip
from diff_pixel.data.photos import DEFAULT_PHOTOS, PhotoCrops, photos
from diff_pixel.data.sampled import SampledData

__all__ = [
    "DEFAULT_PHOTOS",
    "DIGITS_TEST_SIZE",
    "IMAGE_EXTENSIONS",
    "ArraySource",
    "Augment",
    "Loader",
    "PhotoCrops",
    "RandomCropSource",
    "SampledData",
    "Source",
    "digits",
    "image_folder",
    "photos",
    "random_flip",
    "upsample_matrix",
]
