"""The one image reader of gst_mm: the array MMCV's ``LoadImageFromFile`` gives.

Fit, precompute, converters and visualisers read images here, so the Gaussians
are always fitted on exactly the pixels the training pipeline loads:

* the file's bytes are decoded with ``cv2.imdecode(..., IMREAD_COLOR)``, the call
  MMCV's default (``color_type='color'``, ``imdecode_backend='cv2'``) makes: EXIF
  orientation applied, grayscale / RGBA / 16-bit brought to 8-bit 3 channels;
* the result is ``(H, W, 3)`` uint8 in **BGR** order (MMCV's); :func:`read_image`
  returns the same pixels in RGB order (what the fit takes);
* a missing, empty, undecodable or truncated file (a JPEG without its end-of-image
  marker, a PNG without its ``IEND`` chunk: libjpeg only warns and decodes the
  missing part as grey) raises :class:`ImageReadError`, one line naming the file.

:func:`file_sha1` is the content hash the Gaussian cache stores (the image a cache
entry was fitted on is identified by its bytes, not by its path).
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
from collections import OrderedDict
from typing import Tuple

import numpy as np

_JPEG_SOI, _JPEG_EOI = b'\xff\xd8', b'\xff\xd9'
_PNG_SIGNATURE, _PNG_IEND = b'\x89PNG\r\n\x1a\n', b'IEND'
_TAIL = 4096  # bytes searched for an end marker (trailing data after it is allowed)


class ImageReadError(OSError):
    """An image file is missing, empty, undecodable or truncated (names the file)."""


def check_complete(data: bytes, path: str) -> None:
    """Raise :class:`ImageReadError` when ``data`` is a JPEG or PNG cut short.

    A JPEG must end with its end-of-image marker ``FFD9`` and a PNG with its
    ``IEND`` chunk (searched in the last 4 KiB: some writers append trailing
    bytes). Other formats are left to the decoder.
    """
    tail = data[-_TAIL:]
    if data.startswith(_JPEG_SOI) and _JPEG_EOI not in tail:
        raise ImageReadError(f'{path}: truncated JPEG ({len(data)} bytes, no end-of-image '
                             'marker): re-copy or re-convert the image')
    if data.startswith(_PNG_SIGNATURE) and _PNG_IEND not in tail:
        raise ImageReadError(f'{path}: truncated PNG ({len(data)} bytes, no IEND chunk): '
                             're-copy or re-convert the image')


def read_image_file(path: str) -> Tuple[np.ndarray, bytes]:
    """``(BGR uint8 (H, W, 3), file bytes)`` of an image file, decoded as MMCV's
    ``LoadImageFromFile`` decodes it (module doc). Raises :class:`ImageReadError`."""
    import cv2
    path = str(path)
    if not osp.isfile(path):
        raise ImageReadError(f'{path}: image file not found')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise ImageReadError(f'{path}: empty image file')
    check_complete(data, path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageReadError(f'{path}: cannot decode image (unreadable or not an image)')
    return img, data


def read_image(path: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 **RGB**: the pixels of :func:`read_image_file` (EXIF
    orientation applied), as the fit takes them. Raises :class:`ImageReadError`."""
    img, _ = read_image_file(path)
    return np.ascontiguousarray(img[..., ::-1])


def bytes_sha1(data: bytes) -> str:
    """sha1 hex digest of a file's bytes (the cache's image identity)."""
    return hashlib.sha1(data).hexdigest()


def file_sha1(path: str) -> str:
    """sha1 hex digest of an image file's content. Raises :class:`ImageReadError`
    when the file is missing."""
    path = str(path)
    h = hashlib.sha1()
    try:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
    except FileNotFoundError:
        raise ImageReadError(f'{path}: image file not found') from None
    return h.hexdigest()


_SHA1_MEMO: 'OrderedDict[Tuple[str, int, int], str]' = OrderedDict()
_SHA1_MEMO_SIZE = 65536


def file_sha1_memo(path: str) -> str:
    """:func:`file_sha1`, remembered per process for an unchanged file (same path,
    size and modification time), so a data loader hashes each image once per
    worker rather than once per epoch."""
    path = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f'{path}: image file not found') from None
    key = (path, st.st_size, st.st_mtime_ns)
    sha1 = _SHA1_MEMO.get(key)
    if sha1 is None:
        sha1 = _SHA1_MEMO[key] = file_sha1(path)
        if len(_SHA1_MEMO) > _SHA1_MEMO_SIZE:
            _SHA1_MEMO.popitem(last=False)
    return sha1
