from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import pytest

from tritonfleet.web import png


def decode(data: bytes) -> tuple[int, int, int, bytes]:
    """width, height, colour type and the unfiltered rows of a PNG written by `png.encode`."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    return width, height, colour, zlib.decompress(chunks[b"IDAT"])


def test_an_rgb_image_round_trips_through_png() -> None:
    image = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    width, height, colour, raw = decode(png.encode(image))
    assert (width, height, colour) == (3, 4, 2)
    rows = np.frombuffer(raw, np.uint8).reshape(4, 1 + 3 * 3)
    assert (rows[:, 0] == 0).all() and (rows[:, 1:].reshape(4, 3, 3) == image).all()


def test_a_grey_image_is_encoded_as_grey_and_offered_as_a_data_url() -> None:
    url = png.data_url(np.full((2, 2), 255, np.uint8))
    assert url.startswith("data:image/png;base64,")
    _, _, colour, _ = decode(base64.b64decode(url.split(",", 1)[1]))
    assert colour == 0


def test_a_float_image_is_refused() -> None:
    with pytest.raises(ValueError, match="float32"):
        png.encode(np.zeros((2, 2, 3), np.float32))
