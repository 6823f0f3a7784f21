"""PNG encoding of uint8 images, with zlib alone: the pages show model outputs as images."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channel count: grey, grey+alpha, RGB, RGBA.
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def encode(image: np.ndarray) -> bytes:
    """An 8-bit PNG of an [H, W] or [H, W, C] uint8 array, C in 1..4."""
    pixels = image[:, :, None] if image.ndim == 2 else image
    height, width, channels = pixels.shape
    if pixels.dtype != np.uint8 or channels not in _COLOUR_TYPES:
        raise ValueError(f"cannot encode an image of dtype {pixels.dtype} with {channels} channels")
    # Filter type 0 (none) before every row.
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            _chunk(b"IEND", b""),
        )
    )


def data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode(image)).decode("ascii")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
