"""An image's size read from its header, before any pixel is decoded.

A 875 KB PNG can declare 30000x30000 pixels, and decoding it takes gigabytes: anything that accepts images from
outside (the kiosk's API) reads the header first and refuses what is too large. JPEG, PNG, BMP, WebP, GIF and
PGM/PPM are read; anything else answers None (not an image this runtime accepts from outside).
"""
from __future__ import annotations

import re
import struct

JPEG_SIZE_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_BARE_MARKERS = {0x01, *range(0xD0, 0xDA)}         # markers without a length: TEM, RSTn, SOI, EOI
PNM_HEADER = re.compile(rb"\AP[2356](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the image's header, or None when it is none of the formats above or its header
    is cut short."""
    try:
        for reader in (_png, _jpeg, _bmp, _webp, _gif, _pnm):
            size = reader(data)
            if size is not None:
                return size
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(data: bytes):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _jpeg(data: bytes):
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:                                # fill byte
            at += 1
            continue
        if marker in JPEG_BARE_MARKERS:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        if marker in JPEG_SIZE_MARKERS:
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        at += 2 + length
    return None


def _bmp(data: bytes):
    if data[:2] != b"BM":
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:                                      # BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)                        # a negative height is a top-down bitmap


def _webp(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X":
        return (1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
    return None


def _gif(data: bytes):
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    return None


def _pnm(data: bytes):
    match = PNM_HEADER.match(data[:512])
    return (int(match.group(1)), int(match.group(2))) if match else None
