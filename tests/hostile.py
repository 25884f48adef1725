"""Hostile-but-benign inputs built in code: tiny files that ask for huge amounts of work."""

from __future__ import annotations

import struct

#: LZW data of a 1x1 frame of colour 0 (min code size 2: clear, 0, end-of-information).
_ONE_PIXEL_LZW = b"\x02\x02\x44\x01\x00"


def gif_bomb(width: int, height: int, frames: int) -> bytes:
    """An animated GIF whose canvas is ``width`` x ``height`` but whose frames are 1x1.

    Each frame costs 23 bytes on disk and a full canvas to composite: 1,000 frames at
    8000x8000 is a 23 KB file asking a decoder for 64 billion pixels.
    """
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # a 2-colour global table
    out += b"\x00\x00\x00\xff\xff\xff"
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for _ in range(frames):
        out += b"\x21\xf9\x04\x04\x01\x00\x00\x00"  # graphic control: keep, 10 ms
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        out += _ONE_PIXEL_LZW
    out += b"\x3b"
    return bytes(out)
