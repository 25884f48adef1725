"""Hostile and unusual image input: every case gets a specific error code or a correct RGB."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.content import LoadLimits, decode_bytes, load_image, save_like
from genguard.errors import ContentError


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file whose header claims 10^10 pixels: decoding it would need ~30 GB."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def code_of(source, limits: LoadLimits | None = None) -> str:
    with pytest.raises(ContentError) as info:
        load_image(source, limits)
    return info.value.code


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert code_of(path) == "empty_file"


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image at all")
    assert code_of(path) == "not_an_image"


def test_truncated_jpeg_and_png(photos: dict[str, Path], tmp_path: Path) -> None:
    data = photos["coffee"].read_bytes()
    assert code_of(data[: len(data) // 2]) == "truncated"
    png = _png_bytes(Image.open(photos["coffee"]))
    assert code_of(png[: len(png) // 3]) in {"truncated", "corrupt"}


def test_corrupt_bytes_after_valid_header(photos: dict[str, Path]) -> None:
    data = bytearray(_png_bytes(Image.open(photos["rocket"])))
    data[200:400] = b"\xff" * 200  # smash compressed data; CRC no longer matches
    assert code_of(bytes(data)) in {"corrupt", "truncated"}


def test_decompression_bomb_refused_before_decoding() -> None:
    with pytest.raises(ContentError) as error:
        decode_bytes(bomb_png())
    assert error.value.code == "too_many_pixels"
    assert "10000000000 pixels" in str(error.value)  # Pillow's check, reported our way


def test_pixel_limit_is_configurable(photos: dict[str, Path]) -> None:
    assert code_of(photos["coffee"], LoadLimits(max_pixels=10_000)) == "too_many_pixels"
    assert load_image(photos["coffee"], LoadLimits(max_pixels=10_000_000)).width > 0


def test_byte_limit(photos: dict[str, Path]) -> None:
    assert code_of(photos["coffee"], LoadLimits(max_bytes=100)) == "too_large"


def test_missing_path_directory_and_symlink_loop(tmp_path: Path) -> None:
    assert code_of(tmp_path / "missing.png") == "not_found"
    assert code_of(tmp_path) == "not_a_file"
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert code_of(tmp_path / "a.jpg") == "symlink_loop"


def test_wrong_types() -> None:
    assert code_of(12345) == "wrong_type"
    assert code_of(np.zeros((4, 4, 7), dtype=np.uint8)) == "wrong_type"
    assert code_of(io.StringIO("text")) == "wrong_type"


def test_sixteen_bit_greyscale_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    loaded = decode_bytes(_png_bytes(Image.fromarray(ramp)))
    rgb = loaded.rgb
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    # A clipped conversion would saturate almost everything at 255.
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 100 < rgb[32, 0, 0] < 155


def test_cmyk_palette_alpha_and_grey_become_rgb(photos: dict[str, Path]) -> None:
    base = Image.open(photos["coffee"]).convert("RGB")
    variants = {
        "CMYK": base.convert("CMYK"),
        "P": base.convert("P"),
        "L": base.convert("L"),
        "LA": base.convert("LA"),
        "RGBA": base.convert("RGBA"),
    }
    for mode, image in variants.items():
        buffer = io.BytesIO()
        image.save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
        loaded = decode_bytes(buffer.getvalue())
        assert loaded.rgb.shape == (base.height, base.width, 3), mode
        assert loaded.source_mode == mode
        expected = np.asarray(image.convert("RGB"), dtype=int)
        difference = np.abs(loaded.rgb.astype(int) - expected).mean()
        assert difference < 2, (mode, difference)


def test_transparency_is_composited_over_white() -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)  # fully transparent black
    loaded = decode_bytes(_png_bytes(Image.fromarray(rgba, "RGBA")))
    assert (loaded.rgb == 255).all()


def test_exif_orientation_applied(photos: dict[str, Path]) -> None:
    image = Image.open(photos["rocket"])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    loaded = decode_bytes(buffer.getvalue())
    assert (loaded.width, loaded.height) == (image.height, image.width)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_frames_sampled_up_to_limit(fmt: str) -> None:
    frames = [Image.new("RGB", (32, 24), (i * 9, 0, 0)) for i in range(25)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)
    loaded = decode_bytes(buffer.getvalue(), LoadLimits(max_frames=5))
    assert loaded.n_frames_total == 25
    assert len(loaded.frames) == 5
    reds = [int(f[0, 0, 0]) for f in loaded.frames]
    assert reds[0] < 10 and reds[-1] > 200 and reds == sorted(reds)  # first..last, in order


def test_arrays_and_pil_images_accepted() -> None:
    grey = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert load_image(grey).rgb.shape == (10, 10, 3)
    floats = np.ones((5, 5, 3), dtype=np.float32)
    assert (load_image(floats).rgb == 255).all()
    assert load_image(Image.new("L", (7, 3))).rgb.shape == (3, 7, 3)


def test_sha256_recorded(photos: dict[str, Path]) -> None:
    import hashlib

    data = photos["chelsea"].read_bytes()
    assert load_image(photos["chelsea"]).sha256 == hashlib.sha256(data).hexdigest()


def test_save_like_keeps_format_and_size(tmp_path: Path) -> None:
    rgb = np.zeros((33, 47, 3), dtype=np.uint8)
    save_like(rgb, tmp_path / "out.jpg", "PNG")
    saved = Image.open(tmp_path / "out.jpg")
    assert saved.format == "JPEG" and saved.size == (47, 33)
    save_like(rgb, tmp_path / "out.unknown", "WEBP")
    assert Image.open(tmp_path / "out.unknown").format == "WEBP"


def test_analysis_load_shrinks_and_remembers_full_size(photos: dict[str, Path]) -> None:
    big = Image.open(photos["rocket"]).resize((1600, 1200))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", exif=exif)
    loaded = decode_bytes(buffer.getvalue(), LoadLimits(analysis_side=400))
    assert max(loaded.width, loaded.height) == 400
    assert loaded.full_size == (1200, 1600) and loaded.is_reduced  # upright: rotated
    assert loaded.height > loaded.width
    full = decode_bytes(buffer.getvalue())
    assert (full.width, full.height) == (1200, 1600) and not full.is_reduced


def test_unreadable_paths(tmp_path: Path) -> None:
    (tmp_path / "file.jpg").write_bytes(b"x")
    # A path through a regular file cannot be opened (ENOTDIR); root ignores chmod, so
    # this is the unreadable path every user, root included, can hit.
    assert code_of(tmp_path / "file.jpg" / "inner.png") == "unreadable"
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert code_of(fifo) == "not_a_file"  # refused, not read (reading would block forever)


def test_importing_genguard_leaves_pillows_settings_alone() -> None:
    from PIL import Image, ImageFile

    import genguard.content  # noqa: F401

    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
