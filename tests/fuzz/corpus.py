"""A corpus of bad and unusual inputs, built small on disk in a few seconds (no download).

Images: zero-byte, truncated, renamed text, decompression bombs (a 20000² PNG of 1-bit zeros is a
few hundred kB), 16-bit, float, RGBA, palette, animated, too small, too long a side. Numbers and
prompts: NaN, negative, huge, non-integer, control characters, a huge prompt.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, side: int, bit_depth: int = 1, colour_type: int = 0) -> Path:
    """A valid PNG of `side`² zeros written row by row: tiny on disk, enormous when decoded."""
    bits_per_pixel = bit_depth * {0: 1, 2: 3, 6: 4}[colour_type]
    row = b"\x00" * (1 + (side * bits_per_pixel + 7) // 8)  # filter byte + packed pixels
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(side)]
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", side, side, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def gradient(h: int = 96, w: int = 128) -> np.ndarray:
    """A picture with something in it: a disc on a ramp, values in [0, 1]."""
    y, x = np.mgrid[0:h, 0:w]
    disc = ((y - h / 2) ** 2 + (x - w / 2) ** 2 < (min(h, w) / 4) ** 2).astype(float)
    return 0.3 * x / w + 0.6 * disc


def build(folder: Path, example_png: Path) -> dict[str, Path]:
    """Every bad or unusual image file, by name."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str) -> Path:
        files[name] = folder / name
        return files[name]

    put("zero_bytes.png").write_bytes(b"")
    data = example_png.read_bytes()
    put("truncated.png").write_bytes(data[: len(data) // 3])
    put("text_renamed.png").write_text("this is not an image\n" * 20)
    put("header_only.png").write_bytes(data[:33])
    png_bomb(put("bomb_20000.png"), 20000)
    png_bomb(put("bomb_9000_gray.png"), 9000, bit_depth=8)
    values = gradient()
    Image.fromarray((values * 65535).astype(np.uint16)).save(put("gray16.png"))
    Image.fromarray(values.astype(np.float32), mode="F").save(put("float32.tiff"))
    rgba = np.zeros((*values.shape, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = (values > 0.5) * 255
    Image.fromarray(rgba, "RGBA").save(put("rgba.png"))
    Image.fromarray((values * 255).astype(np.uint8)).convert("P").save(put("palette.png"))
    frames = [Image.fromarray((np.roll(values, 8 * i, axis=1) * 255).astype(np.uint8)) for i in range(3)]
    frames[0].save(put("animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(put("tiny_4px.png"))
    Image.new("L", (20000, 2)).save(put("long_side.png"))
    return files


NUMBERS = [float("nan"), float("inf"), -1, -1e9, 1e12, 2.5, "seven", None, True]
PROMPTS = ["", "   ", "\x00\x01\x02\x1b[31mred\x07", "é" * 100_000, "a" * 1_000_000]
