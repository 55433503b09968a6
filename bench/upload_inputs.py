"""Worst-case evidence uploads at the limits, made in memory: the inputs of bench/uploads.py.

Each maker takes the byte and pixel limits and returns (name, bytes) of a file that is accepted
by those limits and costs as much as such a file can: the most pixels (decoding and resizing are
per pixel), the slowest layouts (Adam7 interlacing, 16-bit samples, progressive JPEG scans up to
the scan cap, CMYK with a colour profile), or noise that compresses least.
"""
from __future__ import annotations

import io
import math
import struct
import zlib
from typing import Callable

from PIL import Image, ImageCms

from aftersales.evidence import MAX_JPEG_SCANS


def _square(max_pixels: int, limit_side: int = 1 << 30) -> int:
    return min(int(math.isqrt(max_pixels)), limit_side)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _raw_png(width: int, height: int, bit_depth: int, colour_type: int, row: bytes) -> bytes:
    """A PNG whose every row (filter byte included) is ``row``, compressed as a stream."""
    compressor = zlib.compressobj(9)
    parts = []
    rows_per_chunk = max(1, (1 << 22) // len(row))
    block = row * rows_per_chunk
    done = 0
    while done < height:
        count = min(rows_per_chunk, height - done)
        parts.append(compressor.compress(block if count == rows_per_chunk else row * count))
        done += count
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def png_one_bit_noise(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """The input of the original finding: 1-bit noise, as many pixels as the limits allow."""
    side = _square(min(max_pixels, max_bytes * 8 * 95 // 100))
    image = Image.frombytes("1", (side, side), bytes(_noise(side * ((side + 7) // 8))))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return f"png 1-bit noise {side}x{side}", buffer.getvalue()


def png_rgba16_flat(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """16-bit RGBA, one colour: a tiny file that inflates to 8 bytes a pixel."""
    side = _square(max_pixels)
    return f"png 16-bit RGBA {side}x{side}", _raw_png(side, side, 16, 6, b"\x00" + b"\x80\x00" * 4 * side)


#: Adam7's seven passes: (first column, first row, column step, row step).
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_rgba_interlaced(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """8-bit RGBA, Adam7-interlaced (Pillow cannot write it, so the file is put together here)."""
    side = _square(max_pixels)
    pixel = b"\x78\x50\x28\xc8"
    compressor = zlib.compressobj(9)
    parts = []
    for x0, y0, dx, dy in _ADAM7:
        columns, rows = max(0, (side - x0 + dx - 1) // dx), max(0, (side - y0 + dy - 1) // dy)
        if columns and rows:
            row = b"\x00" + pixel * columns
            batch = max(1, (1 << 22) // len(row))
            for start in range(0, rows, batch):
                parts.append(compressor.compress(row * min(batch, rows - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 1)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))
    return f"png RGBA Adam7 {side}x{side}", data


def jpeg_flat(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    side = _square(max_pixels, 65500)
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(buffer, "JPEG", quality=95)
    return f"jpeg flat {side}x{side}", buffer.getvalue()


def jpeg_progressive_many_scans(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """A progressive JPEG at the pixel limit whose last scan is repeated up to the scan cap:
    each scan is another pass over every block."""
    side = _square(max_pixels, 65500)
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(buffer, "JPEG", quality=95, progressive=True)
    data = buffer.getvalue()
    last_sos = data.rfind(b"\xff\xda")
    body, tail = data[last_sos:-2], data[-2:]
    head = data[:last_sos]
    scans = data.count(b"\xff\xda")
    repeated = head + body * (MAX_JPEG_SCANS - scans + 1) + tail
    return f"jpeg progressive {side}x{side}, {MAX_JPEG_SCANS} scans", repeated


def jpeg_cmyk_with_profile(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """CMYK with an embedded colour profile: decoded, resized and colour-converted to sRGB."""
    side = _square(max_pixels, 65500)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("CMYK", (side, side), (10, 80, 40, 5)).save(buffer, "JPEG", quality=95, icc_profile=profile)
    return f"jpeg CMYK + ICC {side}x{side}", buffer.getvalue()


def jpeg_noise(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """Noise at quality 100: as many pixels as fit in the byte limit."""
    side = 256
    while True:
        data = _jpeg_noise(side * 2)
        if len(data) > max_bytes or (side * 2) ** 2 > max_pixels:
            break
        side *= 2
    low, high = side, side * 2
    while high - low > 64:
        middle = (low + high) // 2
        if len(_jpeg_noise(middle)) <= max_bytes and middle * middle <= max_pixels:
            low = middle
        else:
            high = middle
    return f"jpeg noise q100 {low}x{low}", _jpeg_noise(low)


def _jpeg_noise(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), bytes(_noise(side * side * 3))).save(buffer, "JPEG", quality=100)
    return buffer.getvalue()


def webp_flat(max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    side = _square(max_pixels, 16383)
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (90, 140, 200, 180)).save(buffer, "WEBP", lossless=True, method=0)
    return f"webp lossless RGBA {side}x{side}", buffer.getvalue()


def _noise(count: int) -> bytearray:
    """Deterministic pseudo-random bytes (xorshift), fast enough for tens of megabytes."""
    import random

    return bytearray(random.Random(1).randbytes(count))


MAKERS: list[Callable[[int, int], tuple[str, bytes]]] = [
    png_one_bit_noise, png_rgba16_flat, png_rgba_interlaced, jpeg_flat, jpeg_progressive_many_scans,
    jpeg_cmyk_with_profile, jpeg_noise, webp_flat,
]
