"""Watermark: round trip, robustness to common edits, no false payloads, keys, bad input."""

from __future__ import annotations

import io
import json
import threading

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from genguard.errors import ConfigError, ContentError
from genguard.provenance import watermark as wm

from .conftest import photo

KEY = 0x5EC2E7_0001_7E57


@pytest.fixture(autouse=True)
def _operator_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls without ``key=`` use the operator key; pin it so no key file is written."""
    monkeypatch.setenv("GENGUARD_WATERMARK_KEY", hex(KEY))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def jpeg(rgb: np.ndarray, quality: int = 50) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def half_and_back(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def centre_crop(rgb: np.ndarray, keep: float = 0.9) -> np.ndarray:
    h, w = rgb.shape[:2]
    dh, dw = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    return rgb[dh : h - dh, dw : w - dw]


def brighter(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(rgb)).enhance(1.2))


@pytest.fixture(scope="module")
def marked() -> dict[str, np.ndarray]:
    return {
        name: wm.embed_watermark(photo(name), 0x1234ABCD, key=KEY)
        for name in ("astronaut", "coffee")
    }


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_round_trip_is_exact_and_imperceptible(marked: dict[str, np.ndarray], name: str) -> None:
    original = photo(name)
    out = marked[name]
    assert out.shape == original.shape and out.dtype == np.uint8
    assert psnr(original, out) >= 40.0
    result = wm.detect_watermark(out)
    assert result.found and result.payload == 0x1234ABCD
    assert result.confidence > 0.9 and result.bit_errors == 0
    assert json.loads(json.dumps(result.to_dict()))["payload"] == "0x1234abcd"


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(jpeg, id="jpeg50"),
        pytest.param(half_and_back, id="resize0.5"),
        pytest.param(centre_crop, id="crop90"),
        pytest.param(brighter, id="brightness+20%"),
        pytest.param(lambda x: jpeg(half_and_back(x)), id="resize+jpeg"),
    ],
)
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_survives_common_edits(marked: dict[str, np.ndarray], name: str, attack) -> None:
    result = wm.detect_watermark(attack(marked[name]))
    assert result.found, result
    assert result.payload == 0x1234ABCD


def test_crop_offset_is_recovered(marked: dict[str, np.ndarray]) -> None:
    cropped = marked["astronaut"][37:, 101:]
    result = wm.detect_watermark(cropped)
    assert result.found and result.payload == 0x1234ABCD
    assert result.offset == (37 % wm.FIELD, 101 % wm.FIELD)


@pytest.mark.parametrize("factor", [0.8, 0.6])
def test_kept_rescale_is_found_by_scale_search(factor: float) -> None:
    base = cv2.resize(photo("astronaut"), (768, 768), interpolation=cv2.INTER_CUBIC)
    marked = wm.embed_watermark(base, 0xCAFE0123)
    size = round(768 * factor)
    small = cv2.resize(marked, (size, size), interpolation=cv2.INTER_AREA)
    assert not wm.detect_watermark(small, search_scale=False).found
    result = wm.detect_watermark(small)
    assert result.found and result.payload == 0xCAFE0123
    assert result.scale == pytest.approx(factor, abs=0.01)
    assert result.rotation == pytest.approx(0.0, abs=0.3)


def _unmarked_images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    images = [photo(n) for n in ("astronaut", "coffee", "chelsea", "rocket", "camera")]
    images.append(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))  # white noise
    images.append(np.full((256, 256, 3), 128, np.uint8))  # flat grey
    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    images.append(np.repeat(ramp[:, :, None], 3, axis=2))  # gradient
    images.append(jpeg(photo("chelsea"), 30))
    return images


@pytest.mark.slow  # geometry search on many images (~2 s)
def test_unmarked_images_are_not_found() -> None:
    for image in _unmarked_images():
        result = wm.detect_watermark(image)
        assert not result.found and result.payload is None and result.confidence == 0.0


def test_other_key_does_not_read_the_mark(marked: dict[str, np.ndarray]) -> None:
    result = wm.detect_watermark(marked["coffee"], key=12345)
    assert not result.found and result.payload is None
    assert (
        wm.detect_watermark(wm.embed_watermark(photo("coffee"), 7, key=12345), key=12345).payload
        == 7
    )


def test_payload_forms_and_text_rule() -> None:
    assert wm.normalise_payload(b"\x12\x34") == 0x1234
    assert wm.normalise_payload(0xFFFFFFFF) == 0xFFFFFFFF
    # Documented rule: first 4 bytes of SHA-256 of the UTF-8 label.
    assert wm.text_payload("svc-01") == int.from_bytes(
        __import__("hashlib").sha256(b"svc-01").digest()[:4], "big"
    )
    out = wm.embed_watermark(photo("rocket"), b"gg01")
    assert wm.detect_watermark(out).payload == int.from_bytes(b"gg01", "big")


@pytest.mark.parametrize("payload", [1 << 32, -1, b"12345", True, "abc"])
def test_payload_too_long_or_wrong_type(payload: object) -> None:
    with pytest.raises(wm.WatermarkError):
        wm.embed_watermark(photo("astronaut"), payload)  # type: ignore[arg-type]


def test_too_small_image_is_refused_with_size_in_message() -> None:
    small = np.asarray(photo("astronaut")[:200, :400])
    with pytest.raises(wm.WatermarkError, match=r"400x200.*256x256"):
        wm.embed_watermark(small, 1)
    tiny = wm.detect_watermark(np.zeros((64, 64, 3), np.uint8))
    assert not tiny.found and "smaller" in (tiny.reason or "")


def test_bad_arrays_and_strength() -> None:
    with pytest.raises(ContentError):
        wm.embed_watermark(np.zeros((300, 300), np.uint8), 1)
    with pytest.raises(ContentError):
        wm.detect_watermark(np.zeros((300, 300, 3), np.float32))
    with pytest.raises(wm.WatermarkError):
        wm.embed_watermark(photo("astronaut"), 1, strength=0)


@pytest.mark.parametrize("key", [0, -1, 1 << 64, True, "0x12"])
def test_bad_keys_are_refused(key: object) -> None:
    with pytest.raises(wm.WatermarkError, match="key must be an integer"):
        wm.embed_watermark(photo("astronaut"), 1, key=key)  # type: ignore[arg-type]


def test_public_example_key_cannot_embed() -> None:
    with pytest.raises(wm.WatermarkError, match="public example key"):
        wm.embed_watermark(photo("astronaut"), 1, key=wm.PUBLIC_KEY)


def test_operator_key_from_environment_and_parse_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GENGUARD_WATERMARK_KEY", "0xabc")
    assert wm.operator_key(tmp_path) == 0xABC
    assert not (tmp_path / wm.KEY_FILE).exists()  # the environment wins, nothing written
    monkeypatch.setenv("GENGUARD_WATERMARK_KEY", "secret")
    with pytest.raises(ConfigError, match="decimal or 0x-hex"):
        wm.operator_key(tmp_path)


def test_per_install_key_is_random_private_and_stable(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("GENGUARD_WATERMARK_KEY")
    first = wm.operator_key(tmp_path / "data")
    path = tmp_path / "data" / wm.KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert wm.operator_key(tmp_path / "data") == first  # read back, not regenerated
    assert wm.operator_key(tmp_path / "other") != first  # another install, another key
    assert first not in (0, wm.PUBLIC_KEY)
    # The default folder follows $GENGUARD_STORE, so the key sits beside the database.
    monkeypatch.setenv("GENGUARD_STORE", str(tmp_path / "data" / "genguard.db"))
    assert wm.operator_key() == first
    marked = wm.embed_watermark(photo("rocket"), 99)
    assert wm.detect_watermark(marked, key=first).payload == 99


def test_concurrent_calls_agree(marked: dict[str, np.ndarray]) -> None:
    results: list[int | None] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        out = wm.embed_watermark(photo("coffee"), i)
        found = wm.detect_watermark(out).payload
        with lock:
            results.append(found if found == i else None)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(6))  # type: ignore[type-var]


@pytest.mark.parametrize("shape", [(1030, 700, 3), (300, 257, 3)])
def test_mark_is_added_to_every_channel_and_clipped_exactly(shape: tuple[int, int, int]) -> None:
    """The saturating uint8 add/subtract equals rint(mark) added in int and clipped, on
    non-contiguous input and sizes that are not multiples of the field."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (shape[0], shape[1] + 5, 3), dtype=np.uint8)[:, 5:]
    tile = (rng.standard_normal((wm.FIELD, wm.FIELD)) * 60).astype(np.float32)
    reps = (-(-shape[0] // wm.FIELD), -(-shape[1] // wm.FIELD))
    mark = np.tile(np.rint(tile).astype(np.int32), reps)[: shape[0], : shape[1], None]
    expected = np.clip(rgb.astype(np.int32) + mark, 0, 255).astype(np.uint8)
    assert np.array_equal(wm._apply(rgb, tile), expected)


@pytest.mark.parametrize(
    ("name", "side"),
    [("astronaut", 300), ("coins", 300), ("grass", 340), ("grass", 384), ("gravel", 340),
     ("gravel", 384)],
)  # fmt: skip
def test_images_smaller_than_the_field_read_back_unedited(name: str, side: int) -> None:
    """A 300-384 px image holds only a window of the 512 px field, whose spectrum leaks
    between coefficients; the closed loop reads the marked image as the detector will and
    strengthens what reads weakly. Over 8 payloads, one pass found these 1, 6, 0, 2, 0
    and 4 times; the loop finds all 8 each."""
    img = photo(name)
    h, w = img.shape[:2]
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    big = cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_AREA)
    top, left = (size[1] - side) // 2, (size[0] - side) // 2
    small = np.ascontiguousarray(big[top : top + side, left : left + side])
    marked = wm.embed_watermark(small, 0x1234ABCD, key=KEY)
    result = wm.detect_watermark(marked, key=KEY, search_scale=False)
    assert result.found and result.payload == 0x1234ABCD, result
    assert psnr(small, marked) > 40.0
