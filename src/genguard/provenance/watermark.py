"""Invisible, keyed watermark for generated images, bound to the image it was made for.

Algorithm (designed for genguard; see docs/provenance.md for the measured numbers):

* **Payload field.** A keyed PRNG picks Fourier coefficients of a ``FIELD`` x ``FIELD``
  (512 px) field in a low/mid band (0.05-0.25 cycles per pixel: low enough to survive JPEG
  and a 0.5x-resize-and-back, high enough to stay out of the image's strongest content),
  gives each one a random phase and splits them into a translation *pilot* and one set per
  code bit. An image of up to 512 px per side holds one field and no repetition at all;
  averaging an image over cells therefore estimates nothing that is not already there.
* **Binding.** The code word is BCH(payload 32 bits + MAC 32 bits) whitened with a keyed
  mask. The MAC is a keyed BLAKE2b over the payload *and* 24 coarse content bits of this
  image (signs of keyed projections of its normalised 8x8 luminance thumbnail). A mark
  estimated from one image and pasted onto another decodes, but its MAC does not match the
  new image's content bits, so it is refused (``reason`` says so). The detector tolerates
  content drift by retrying the MAC with the 7 least reliable content bits flipped.
* **Sync template.** A few keyed sinusoids on a ``SYNC_TILE`` (128 px) grid carry a share of
  the energy and no payload: spikes in the image's spectrum that move with any rotation,
  scale, aspect change or mirroring. The detector finds them, undoes the map, and reads
  the field again (plain flips are tried on the field directly). Averaging the image over
  cells estimates only this payload-free template.
* **Detection.** The luminance is high-passed and folded at the field period; the pilot's
  phase correlation finds the offset (crops), each bit is the ring-weighted phase agreement
  of its coefficients, BCH (Chase soft decoding) must accept the word and the MAC must match
  the key and the image. Nothing is reported for unmarked images (module test + bench).
* **Embedding is informed and closed-loop**: the embedder folds the host like the detector
  and gives more amplitude to the bits the host works against, then to the bits that come
  out weak after a simulated resize + JPEG (``_bit_boosts``, ``_weak_bits_after_edit``).

Embedding needs an operator key: :func:`operator_key` reads ``GENGUARD_WATERMARK_KEY`` or a
random per-install key stored 0600 in the data folder. All functions are pure and the
keyed carriers are cached read-only arrays, so calls are thread-safe.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import bchlib
import cv2
import numpy as np

from genguard import settings
from genguard.errors import ConfigError, ContentError, GenguardError

#: Period of the payload field in pixels (images up to this size hold no repetition).
FIELD = 512
#: Kept for callers that used it: the fold period of the payload field.
TILE = FIELD
#: Period of the payload-free synchronisation tile (must divide FIELD).
SYNC_TILE = 128
#: Carrier band in cycles per pixel (inclusive low, exclusive high).
BAND = (6.0 / 128, 32.0 / 128)
#: Frequency rings over which the detector estimates how well the mark survived.
RINGS = 6
#: Share of the field's coefficients given to the translation pilot.
PILOT_SHARE = 0.3
#: Share of the mark's energy in the sync tile.
SYNC_SHARE = 0.35
#: Payload size: 32 bits (an int below 2**32 or up to 4 bytes).
PAYLOAD_BITS = 32
PAYLOAD_BYTES = PAYLOAD_BITS // 8
#: MAC over payload + content bits, and the number of content bits it covers.
MAC_BITS = 32
CONTENT_BITS = 24
#: The detector retries the MAC with every pattern of these least reliable content bits
#: flipped (2**7 tries per supposed extent): enough for edits that move the thumbnail, too few
#: for another image.
CONTENT_FLIPS = 7
#: Offset of the content projections (see ``content_soft``); unit-spread thumbnails give
#: projections of spread 8, so this only matters for flat images.
CONTENT_DEADZONE = 1.0
#: The example key of earlier releases; it is public, so it may never embed.
PUBLIC_KEY = 0x67_67_77_6D
#: Default strength: RMS of the luminance change in 8-bit levels (about 41 dB PSNR).
DEFAULT_STRENGTH = 2.3
#: Smallest image side accepted by :func:`embed_watermark`.
MIN_SIDE = 256
#: Smallest image side :func:`detect_watermark` looks at.
DETECT_MIN_SIDE = 128
#: BCH parameters: GF(2^7) (n <= 127 bits), corrects up to 9 bit errors.
BCH_M = 7
BCH_T = 9
#: Pilot correlation z-score below which no decoding is attempted.
PILOT_Z_MIN = 4.5
#: Number of strongest pilot peaks tried before giving up.
PILOT_CANDIDATES = 3
#: Informed embedding (see ``_bit_boosts``).
BOOST_TARGET = 0.3
BOOST_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
BOOST_HOPELESS = 4.0
#: Closed-loop embedding: bits whose margin (as read, and after a simulated edit) is below
#: LOOP_MARGIN x the median soft value get LOOP_BOOST times more amplitude, for up to
#: LOOP_ROUNDS passes.
CLOSED_LOOP = True
LOOP_MARGIN = 0.5
LOOP_BOOST = 1.6
LOOP_ROUNDS = 3
#: Soft decoding: number of least reliable code bits whose flips are tried (Chase-II).
CHASE_BITS = 4

#: Sync template: number of keyed sinusoids and their radius band (cycles per SYNC_TILE).
TEMPLATE_PEAKS = 12
TEMPLATE_BAND = (14.0, 26.0)
#: Geometry search: rotations up to +-GEOMETRY_ANGLE degrees, x/y scales in GEOMETRY_SCALES
#: (kept rescales and aspect changes), on a central crop of up to GEOMETRY_CROP pixels.
GEOMETRY_ANGLE = 12.0
GEOMETRY_SCALES = (0.45, 1.7)
GEOMETRY_CROP = 768
GEOMETRY_CANDIDATES = 8
#: Pilot z-score a geometry candidate needs before it is decoded: above the largest peak
#: of pure noise over the 512 x 512 correlations an unmarked image gets (~5-6), below a
#: real mark's once its geometry is undone (>= 7.5 at 512 px).
GEOMETRY_Z_GATE = 6.5
GEOMETRY_MIN_SIDE = 128
GEOMETRY_MAX_PIXELS = 40_000_000

#: Name of the per-install key file in the data folder.
KEY_FILE = "watermark.key"

_DATA_BYTES = (PAYLOAD_BITS + MAC_BITS) // 8
_THUMB = 8
_CONTENT_MARGIN = 0.28
_CONTENT_SIDE = 256


class WatermarkError(GenguardError):
    """A watermark cannot be embedded: payload, key or image invalid."""

    code = "bad_watermark"


@dataclass(frozen=True)
class WatermarkResult:
    """Outcome of :func:`detect_watermark`.

    ``confidence`` is 1.0 for a clean read and falls towards 0.5 as the BCH decoder has to
    correct more bit errors; it is 0.0 when nothing was found. ``sync_z`` is the pilot
    correlation peak in standard deviations. ``scale``, ``rotation`` (degrees) and ``flip``
    say which geometric change was undone before the mark read (None: none); ``offset`` is
    the field offset in the (rectified) image.
    """

    found: bool
    payload: int | None
    confidence: float
    bit_errors: int | None = None
    sync_z: float = 0.0
    offset: tuple[int, int] | None = None
    scale: float | None = None
    rotation: float | None = None
    flip: str | None = None
    reason: str | None = None

    @property
    def payload_hex(self) -> str | None:
        """Payload as ``0x`` + 8 hex digits, or None."""
        return None if self.payload is None else f"0x{self.payload:08x}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; the payload is written as a hex string."""
        out = asdict(self)
        out["payload"] = self.payload_hex
        out["confidence"] = round(self.confidence, 4)
        out["sync_z"] = round(self.sync_z, 2)
        out["offset"] = list(self.offset) if self.offset is not None else None
        return out


# ---------------------------------------------------------------------------------------
# Operator key
# ---------------------------------------------------------------------------------------


def parse_key(text: str) -> int:
    """A key written as decimal or 0x-hex, checked; raises ConfigError with the rule."""
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise ConfigError(
            f"watermark key must be an integer (decimal or 0x-hex), got {text!r}"
        ) from None
    check_key(value)
    return value


def check_key(key: object) -> int:
    """Return ``key`` if it is a usable key (1 .. 2**64-1), else raise WatermarkError."""
    if isinstance(key, bool) or not isinstance(key, int) or not 0 < key < 1 << 64:
        raise WatermarkError("watermark key must be an integer between 1 and 2**64-1")
    return key


def default_data_dir() -> Path:
    """The data folder: the one holding ``$GENGUARD_STORE`` when it is a file, else
    ``./genguard-data`` (the default store's folder), so the key lives beside the data."""
    store = settings.store_location()
    if store and "://" not in store:
        return Path(store).expanduser().parent
    return Path("genguard-data")


def operator_key(data_dir: Path | None = None) -> int:
    """The operator's watermark key: ``$GENGUARD_WATERMARK_KEY``, else the per-install key.

    Why a per-install key and not a built-in default: a key that ships with the code lets
    anyone embed "generated by you" marks. The per-install key is created on first use with
    256 bits of OS randomness reduced to 64, written 0600 to ``<data_dir>/watermark.key``
    (created atomically, so concurrent first uses agree) and read back afterwards. Back it
    up: marks made with it can only be read with it.
    """
    text = settings.watermark_key()
    if text:
        return parse_key(text)
    folder = data_dir if data_dir is not None else default_data_dir()
    path = folder / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    try:
        return parse_key(path.read_text("ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the watermark key {path}: {exc}") from None


def _create_key_file(path: Path) -> None:
    """Write a fresh random key to ``path`` (0600) unless another process got there first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            key = 0
            while key in (0, PUBLIC_KEY):
                key = secrets.randbits(64)
            fh.write(f"0x{key:016x}\n")
        try:
            os.link(tmp, path)  # atomic; fails if a concurrent first use won
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the watermark key {path}: {exc}; set GENGUARD_WATERMARK_KEY"
        ) from None


def _resolve_key(key: int | None) -> int:
    return operator_key() if key is None else check_key(key)


# ---------------------------------------------------------------------------------------
# Payload coding
# ---------------------------------------------------------------------------------------

_bch_lock = threading.Lock()
_bch = bchlib.BCH(BCH_T, m=BCH_M)
#: Code length in bits: payload + MAC + BCH parity.
CODE_BITS = _DATA_BYTES * 8 + _bch.ecc_bits


def text_payload(text: str) -> int:
    """32-bit payload for a text label: the first 4 bytes of SHA-256(UTF-8 text).

    Why a hash: any label length fits, and the same label always maps to the same payload,
    so ``detect`` can be checked against it (``genguard watermark payload --text``).
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


def normalise_payload(payload: int | bytes) -> int:
    """Turn an int or up to 4 bytes into the 32-bit payload, or raise WatermarkError."""
    if isinstance(payload, bool):
        raise WatermarkError("payload must be an int or bytes, not bool")
    if isinstance(payload, bytes | bytearray):
        if len(payload) > PAYLOAD_BYTES:
            raise WatermarkError(
                f"payload is {len(payload)} bytes; the watermark carries at most "
                f"{PAYLOAD_BYTES} bytes ({PAYLOAD_BITS} bits); use text_payload() for longer labels"
            )
        return int.from_bytes(bytes(payload), "big")
    if isinstance(payload, int):
        if payload < 0 or payload >= 1 << PAYLOAD_BITS:
            raise WatermarkError(
                f"payload {payload:#x} does not fit in {PAYLOAD_BITS} bits (0 .. 0xffffffff)"
            )
        return payload
    raise WatermarkError(f"payload must be an int or bytes, not {type(payload).__name__}")


def _mac(key: int, payload: int, content: int) -> int:
    """Keyed MAC (BLAKE2b, 32 bits) over the payload and the image's content bits."""
    msg = payload.to_bytes(PAYLOAD_BYTES, "big") + content.to_bytes(CONTENT_BITS // 8, "big")
    digest = hashlib.blake2b(msg, digest_size=MAC_BITS // 8, key=key.to_bytes(8, "big"))
    return int.from_bytes(digest.digest(), "big")


def _bits_to_int(bits: np.ndarray) -> int:
    return int("".join("1" if b else "0" for b in bits.tolist()), 2)


def _encode_bits(payload: int, mac: int, key: int) -> np.ndarray:
    """(payload, MAC) -> whitened code word of CODE_BITS bits (uint8 0/1)."""
    data = payload.to_bytes(PAYLOAD_BYTES, "big") + mac.to_bytes(MAC_BITS // 8, "big")
    with _bch_lock:
        ecc = _bch.encode(data)
    bits = np.unpackbits(np.frombuffer(data + bytes(ecc), dtype=np.uint8))[:CODE_BITS]
    return bits ^ _carrier(key).whitening


def _decode_bits(bits: np.ndarray, key: int) -> tuple[int, int, int] | None:
    """Whitened hard bits -> (payload, MAC, corrected errors), or None when BCH rejects."""
    raw = (bits.astype(np.uint8) ^ _carrier(key).whitening).astype(np.uint8)
    nbytes = _DATA_BYTES + _bch.ecc_bytes
    padded = np.zeros(nbytes * 8, dtype=np.uint8)
    padded[:CODE_BITS] = raw
    packed = np.packbits(padded).tobytes()
    data = bytearray(packed[:_DATA_BYTES])
    ecc = bytearray(packed[_DATA_BYTES:])
    with _bch_lock:
        nerr = _bch.decode(data, ecc)
        if nerr < 0:
            return None
        _bch.correct(data, ecc)
    payload = int.from_bytes(data[:PAYLOAD_BYTES], "big")
    mac = int.from_bytes(data[PAYLOAD_BYTES:], "big")
    return payload, mac, int(nerr)


# ---------------------------------------------------------------------------------------
# Content bits (binding)
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _projections(key: int) -> np.ndarray:
    """Keyed random hyperplanes over the thumbnail (secret, so bits cannot be steered)."""
    rng = np.random.default_rng([key, 0xB17D])
    proj = rng.standard_normal((CONTENT_BITS, _THUMB * _THUMB))
    proj.setflags(write=False)
    return proj


def content_soft(
    luma: np.ndarray,
    key: int,
    mask: np.ndarray | None = None,
    box: tuple[float, float, float, float] | None = None,
    small: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> np.ndarray:
    """Soft content bits of an image (sign = bit, magnitude = reliability).

    Why these: the central region's 8x8 luminance thumbnail, normalised to zero mean and
    unit spread, barely moves under JPEG, noise, blur, brightness/contrast and rescales,
    while unrelated images point in unrelated directions. Signs of keyed random projections
    (SimHash) turn it into bits. ``box`` (top, left, bottom, right in pixels, may reach
    outside the image) is the original image's extent as the detector supposes it after a
    crop; only valid pixels (``mask`` 1, inside the image) are averaged. ``small`` is
    :func:`_small` of the same image, when the caller has it already.
    """
    height, width = luma.shape
    sums, counts, factor = small if small is not None else _small(luma, mask)
    top, left, bottom, right = box if box is not None else (0.0, 0.0, height, width)
    margin_y = (bottom - top) * _CONTENT_MARGIN
    edges_y = np.linspace(top + margin_y, bottom - margin_y, _THUMB + 1) * factor
    margin_x = (right - left) * _CONTENT_MARGIN
    edges_x = np.linspace(left + margin_x, right - margin_x, _THUMB + 1) * factor
    ys = np.clip(np.rint(edges_y).astype(np.intp), 0, sums.shape[0] - 1)
    xs = np.clip(np.rint(edges_x).astype(np.intp), 0, sums.shape[1] - 1)

    def cells(table: np.ndarray) -> np.ndarray:
        return (table[ys[1:], :][:, xs[1:]] - table[ys[:-1], :][:, xs[1:]]
                - table[ys[1:], :][:, xs[:-1]] + table[ys[:-1], :][:, xs[:-1]])  # fmt: skip

    num, den = cells(sums), cells(counts)
    thumb = num / np.maximum(den, 1e-9)
    ok = den >= 0.3 * max(float(den.max()), 1e-9)
    thumb[~ok] = thumb[ok].mean() if ok.any() else 0.0
    vec = thumb.ravel() - thumb.mean()
    vec /= max(float(vec.std()), 2.0)
    # The dead zone puts near-flat images (whose thumbnails are just the mark's faint
    # residue) on a fixed bit pattern instead of a random one.
    return _projections(key) @ vec - CONTENT_DEADZONE


def _small(luma: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Integral images of a <= _CONTENT_SIDE px copy (luma x valid, valid) and its scale."""
    height, width = luma.shape
    factor = min(1.0, _CONTENT_SIDE / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    valid = np.ones_like(small)
    if mask is not None:
        shrunk = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        valid = (shrunk > 0.5).astype(np.float64)
    sums = cv2.integral(small * valid, sdepth=cv2.CV_64F)
    counts = cv2.integral(valid, sdepth=cv2.CV_64F)
    return sums, counts, factor


def _content_bits(luma: np.ndarray, key: int) -> int:
    return _bits_to_int(content_soft(luma, key) > 0)


def _extents(
    height: int, width: int, offset: tuple[int, int]
) -> list[tuple[float, float, float, float]]:
    """Where the original image may lie in this one (top, left, bottom, right).

    The field starts at the original's top-left pixel, so the pilot offset says how much
    was cut from the top and left (for cuts under FIELD pixels); how much was cut from the
    bottom and right is unknown, so a few common cases are supposed: nothing, as much as
    from the top/left (a centred crop), or a tenth or a quarter of the original per side.
    """
    oy, ox = offset
    out = [
        (0.0, 0.0, float(height), float(width)),
        (-oy, -ox, float(height + oy), float(width + ox)),
    ]
    for keep_y in (1.0, 0.9, 0.75):
        for keep_x in (1.0, 0.9, 0.75):
            out.append((-oy, -ox, (height + oy) / keep_y - oy, (width + ox) / keep_x - ox))
    unique: list[tuple[float, float, float, float]] = []
    for box in out:
        if box not in unique:
            unique.append(box)
    return unique


def _mac_matches(
    payload: int,
    mac: int,
    key: int,
    luma: np.ndarray,
    small: tuple[np.ndarray, np.ndarray, float],
    offset: tuple[int, int],
    boxes: tuple[tuple[float, float, float, float], ...] = (),
) -> bool:
    """True when ``mac`` fits this payload and *this* image's content bits (with the
    CONTENT_FLIPS least reliable bits free, for each supposed original extent, ``boxes``
    included): the binding check that refuses a mark copied from another image.
    ``small`` is :func:`_small` of ``luma`` (and its valid mask), computed once per view."""
    height, width = luma.shape
    tried: set[int] = set()
    for box in [*_extents(height, width, offset), *boxes]:
        soft = content_soft(luma, key, None, box, small)
        base = _bits_to_int(soft > 0)
        weakest = np.argsort(np.abs(soft))[:CONTENT_FLIPS]
        masks = [1 << (CONTENT_BITS - 1 - int(i)) for i in weakest]
        for pattern in range(1 << CONTENT_FLIPS):
            trial = base
            for i, bit in enumerate(masks):
                if pattern >> i & 1:
                    trial ^= bit
            if trial in tried:
                continue
            tried.add(trial)
            if _mac(key, payload, trial) == mac:
                return True
    return False


# ---------------------------------------------------------------------------------------
# Carriers
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Carrier:
    """Keyed field carrier of one key; arrays are read-only so threads can share them."""

    pilot_rows: np.ndarray
    pilot_cols: np.ndarray
    pilot_phase: np.ndarray  # complex unit phasors
    bit_rows: np.ndarray
    bit_cols: np.ndarray
    bit_phase: np.ndarray
    bit_index: np.ndarray  # which code bit each coefficient carries
    whitening: np.ndarray  # keyed bit mask XORed on the code word
    pilot_ring: np.ndarray  # frequency ring (0..RINGS-1) of each pilot coefficient
    bit_ring: np.ndarray  # frequency ring of each bit coefficient


def _band(period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rfft2 bins (rows, cols, radius in cycles per pixel) of the carrier band."""
    fu = np.fft.fftfreq(period, d=1.0 / period)[:, None]
    fv = np.arange(period // 2 + 1)[None, :]
    radius = np.hypot(fu, fv) / period
    # Columns 0 and period/2 are their own mirror in rfft2; leaving them out keeps every
    # chosen coefficient independent (its conjugate twin is implied).
    usable = (radius >= BAND[0]) & (radius < BAND[1]) & (fv > 0) & (fv < period // 2)
    rows, cols = np.nonzero(usable)
    return rows, cols, radius[rows, cols]


@lru_cache(maxsize=16)
def _carrier(key: int) -> _Carrier:
    """Build (once per key) the keyed assignment of field coefficients to pilot and bits.

    The sync template's bins are left out, so the two patterns are orthogonal.
    """
    check_key(key)
    rng = np.random.default_rng([key, 0x5EED, FIELD])
    rows, cols, radius = _band(FIELD)
    step = FIELD // SYNC_TILE
    _, t_rows, t_cols = _template(key)
    t_fu = np.where(t_rows >= SYNC_TILE // 2, t_rows - SYNC_TILE, t_rows)
    taken = set(zip((t_fu * step % FIELD).tolist(), (t_cols * step).tolist(), strict=True))
    keep = np.array(
        [(r, c) not in taken for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    )
    rows, cols, radius = rows[keep], cols[keep], radius[keep]
    order = rng.permutation(rows.size)
    rows, cols, radius = rows[order], cols[order], radius[order]
    phase = np.exp(1j * rng.uniform(0.0, 2 * np.pi, rows.size))
    n_pilot = int(rows.size * PILOT_SHARE)
    n_bits = rows.size - n_pilot
    bit_index = rng.permutation(np.arange(n_bits) % CODE_BITS)
    whitening = rng.integers(0, 2, CODE_BITS, dtype=np.uint8)
    ring = ((radius - BAND[0]) / (BAND[1] - BAND[0]) * RINGS).astype(np.intp)
    ring = np.clip(ring, 0, RINGS - 1)
    arrays = (
        rows[:n_pilot],
        cols[:n_pilot],
        phase[:n_pilot],
        rows[n_pilot:],
        cols[n_pilot:],
        phase[n_pilot:],
        bit_index,
        whitening,
        ring[:n_pilot],
        ring[n_pilot:],
    )
    for arr in arrays:
        arr.setflags(write=False)
    return _Carrier(*arrays)


@lru_cache(maxsize=16)
def _template(key: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keyed sync template: (frequencies as fx, fy in cycles/px, rfft rows, rfft cols) on
    the SYNC_TILE grid. Few, well separated spikes away from the axes and from JPEG's 8-px
    block frequencies, so they stand out of any image's spectrum and of each other."""
    rng = np.random.default_rng([key, 0x5C7, SYNC_TILE])
    fu = np.fft.fftfreq(SYNC_TILE, d=1.0 / SYNC_TILE)
    rows, cols = np.meshgrid(np.arange(SYNC_TILE), np.arange(1, SYNC_TILE // 2), indexing="ij")
    fy, fx = fu[rows], cols.astype(np.float64)
    radius = np.hypot(fx, fy)
    ok = (radius >= TEMPLATE_BAND[0]) & (radius < TEMPLATE_BAND[1])
    ok &= (np.abs(fy) >= 3) & (fx >= 3)
    ok &= (np.abs(fx % 16 - 8) < 6) | (np.abs(np.abs(fy) % 16 - 8) < 6)
    pool = np.flatnonzero(ok.ravel())
    chosen: list[int] = []
    for idx in rng.permutation(pool):
        p = np.array([fx.flat[idx], fy.flat[idx]])
        if all(np.hypot(*(p - np.array([fx.flat[j], fy.flat[j]]))) >= 4 for j in chosen):
            chosen.append(int(idx))
        if len(chosen) == TEMPLATE_PEAKS:
            break
    sel = np.array(chosen)
    freqs = np.column_stack([fx.flat[sel], fy.flat[sel]]) / SYNC_TILE
    arrays = (freqs, rows.flat[sel].astype(np.intp), cols.flat[sel].astype(np.intp))
    for arr in arrays:
        arr.setflags(write=False)
    return arrays


@lru_cache(maxsize=16)
def _sync_tile(key: int) -> np.ndarray:
    """The keyed, payload-free sync tile (RMS 1): the template's sinusoids, random phases."""
    rng = np.random.default_rng([key, 0x5C8, SYNC_TILE])
    _, rows, cols = _template(key)
    spec = np.zeros((SYNC_TILE, SYNC_TILE // 2 + 1), dtype=np.complex128)
    spec[rows, cols] = np.exp(1j * rng.uniform(0.0, 2 * np.pi, rows.size))
    tile = np.fft.irfft2(spec, s=(SYNC_TILE, SYNC_TILE))
    tile /= np.sqrt(np.mean(tile**2))
    tile.setflags(write=False)
    return tile


@lru_cache(maxsize=4)
def _highpass_gain() -> np.ndarray:
    """Frequency response of the detector's high-pass (luma minus a 9x9 box mean) per rfft bin."""
    f = np.fft.fftfreq(FIELD)
    box = np.ones_like(f)
    nz = f != 0
    box[nz] = np.sin(9 * np.pi * f[nz]) / (9 * np.sin(np.pi * f[nz]))
    gain = 1.0 - box[:, None] * box[None, : FIELD // 2 + 1]
    gain.setflags(write=False)
    return gain


def _bit_boosts(
    host: np.ndarray, directions: np.ndarray, amp: float | np.ndarray, key: int
) -> np.ndarray:
    """Per-code-bit amplitude factors so that every bit reads clearly on *this* host.

    Informed embedding: the embedder knows the folded host spectrum the detector will see,
    so it predicts each bit's phase-agreement score and raises the amplitude of the bits the
    host works against (by up to ``BOOST_HOPELESS``). Energy goes where it is needed
    instead of evenly, which lets small, busy images carry the payload at the same PSNR.
    """
    car = _carrier(key)
    gain = _highpass_gain()[car.bit_rows, car.bit_cols]
    h = host[car.bit_rows, car.bit_cols]
    counts = np.bincount(car.bit_index, minlength=CODE_BITS).astype(np.float64)
    target = BOOST_TARGET * counts
    factors = np.full(CODE_BITS, BOOST_HOPELESS)
    for f in BOOST_GRID[::-1]:
        r = h + f * amp * gain * directions
        agree = np.real(r * np.conj(directions)) / np.maximum(np.abs(r), 1e-12)
        score = np.bincount(car.bit_index, weights=agree, minlength=CODE_BITS)
        factors[score >= target] = f
    return factors


def _field_pattern(
    host: np.ndarray,
    code: np.ndarray,
    key: int,
    rms: float,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Spatial payload field (RMS = ``rms``) for one code word, adapted to the host image.

    ``host`` is the rfft2 of the host's folded luminance (what the detector will see).
    ``extra`` multiplies the amplitude of individual code bits (closed-loop pass).
    """
    car = _carrier(key)
    signs = 1.0 - 2.0 * code.astype(np.float64)
    directions = car.bit_phase * signs[car.bit_index]
    n_coef = car.pilot_rows.size + car.bit_rows.size
    # Parseval for rfft2 (each chosen bin has a mirrored twin): RMS = amp * sqrt(2n) / T^2.
    amp = rms * FIELD * FIELD / np.sqrt(2.0 * n_coef)
    n_bits = car.bit_rows.size
    scale = 1.0
    for _ in range(3):
        boost = _bit_boosts(host, directions, amp * scale, key)
        if extra is not None:
            boost = boost * extra
        scale = np.sqrt(n_bits / np.sum(boost[car.bit_index] ** 2))
    boost *= scale
    # complex64: single precision is ample for a mark of a few grey levels, and faster.
    spec = np.zeros((FIELD, FIELD // 2 + 1), dtype=np.complex64)
    spec[car.pilot_rows, car.pilot_cols] = car.pilot_phase
    spec[car.bit_rows, car.bit_cols] = directions * boost[car.bit_index]
    tile = np.fft.irfft2(spec, s=(FIELD, FIELD)).astype(np.float64)
    tile *= rms / np.sqrt(np.mean(tile**2))
    return tile


def _mark_tile(
    host: np.ndarray,
    code: np.ndarray,
    key: int,
    strength: float,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Field + sync tile (total RMS ``strength``) as one FIELD-periodic float32 tile."""
    field = _field_pattern(host, code, key, strength * np.sqrt(1.0 - SYNC_SHARE), extra)
    reps = FIELD // SYNC_TILE
    sync = np.tile(_sync_tile(key), (reps, reps)) * (strength * np.sqrt(SYNC_SHARE))
    return (field + sync).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------------------


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ContentError(f"expected an HxWx3 RGB array, got shape {shape}", code="wrong_type")
    if rgb.dtype != np.uint8:
        raise ContentError(f"expected uint8 pixels, got {rgb.dtype}", code="wrong_type")


def embed_watermark(
    rgb: np.ndarray,
    payload: int | bytes,
    *,
    key: int | None = None,
    strength: float = DEFAULT_STRENGTH,
) -> np.ndarray:
    """Return a copy of ``rgb`` (HxWx3 uint8) carrying the 32-bit ``payload``.

    ``key`` is the operator's secret; None uses :func:`operator_key` (environment or the
    per-install key file). The public example key of earlier releases is refused, since
    anyone could embed with it. ``strength`` is the RMS luminance change in 8-bit levels
    (2.0 gives ~42 dB PSNR). Raises :class:`WatermarkError` for payloads over 32 bits,
    bad keys and images under 256x256 pixels.
    """
    _check_rgb(rgb)
    value = normalise_payload(payload)
    secret = _resolve_key(key)
    if secret == PUBLIC_KEY:
        raise WatermarkError(
            "key 0x6767776d is the public example key and cannot embed; use your own secret "
            "key (GENGUARD_WATERMARK_KEY) or leave it unset for a per-install key"
        )
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise WatermarkError(
            f"image is {width}x{height}; the watermark needs at least {MIN_SIDE}x{MIN_SIDE} "
            f"pixels to carry a {PAYLOAD_BITS}-bit payload robustly"
        )
    if not 0.0 < strength <= 20.0:
        raise WatermarkError(f"strength must be in (0, 20], got {strength}")
    luma = _luma(rgb)
    code = _encode_bits(value, _mac(secret, value, _content_bits(luma, secret)), secret)
    host = _rfft2(_fold(luma))
    out = _apply(rgb, _mark_tile(host, code, secret, strength))
    if CLOSED_LOOP:
        out = _close_loop(rgb, out, host, code, secret, strength)
    return out


def _close_loop(
    rgb: np.ndarray, marked: np.ndarray, host: np.ndarray, code: np.ndarray, key: int,
    strength: float,
) -> np.ndarray:  # fmt: skip
    """Re-embed with more amplitude on the bits that read weakly, until none does.

    Why: the informed boosts predict each bit from the host alone, but an image smaller
    than the field holds only a window of it, whose spectrum leaks between neighbouring
    coefficients; on such images (and busy ones) bits came out weak or wrong even unedited
    (up to 10 of 120 at 384 px). So the marked image is read exactly as the detector will
    read it, plus once through a typical platform edit, and the weak bits are raised
    (total energy stays the same), for up to LOOP_ROUNDS passes; most images need one.
    """
    extra = np.ones(CODE_BITS)
    edited: np.ndarray | None = _weak_bits_after_edit(marked, code, key)
    for _ in range(LOOP_ROUNDS):
        soft = _soft_bits(_phase_spectrum(_fold(_luma(marked))), (0, 0), _carrier(key))
        weak = _weak(soft, code)
        read_weakly = bool(weak.any())
        if edited is not None:
            weak |= edited
            edited = None
        if not weak.any():
            break
        extra[weak] *= LOOP_BOOST
        marked = _apply(rgb, _mark_tile(host, code, key, strength, extra))
        if not read_weakly:  # only the edit's bits needed help: one pass does it
            break
    return marked


def _weak(soft: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Bits whose margin is below LOOP_MARGIN x the median soft value (or wrong)."""
    margin = soft * (1.0 - 2.0 * code.astype(np.float64))
    return margin < LOOP_MARGIN * (float(np.median(np.abs(soft))) + 1e-9)


def _apply(rgb: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """Add the FIELD-periodic mark to R, G and B alike (a pure luminance change).

    The rounded mark is split into its positive and negative parts as uint8, so OpenCV's
    saturating add and subtract do the clipping in place (exact: each pixel gets only one
    of the two); work goes one tile row at a time, so a 64-megapixel image needs a few MB
    of scratch space instead of gigabytes.
    """
    height, width = rgb.shape[:2]
    reps = -(-width // FIELD)
    row_mark = np.tile(np.rint(tile), (1, reps))[:, :width]
    up = cv2.cvtColor(np.clip(row_mark, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    down = cv2.cvtColor(np.clip(-row_mark, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    out = np.empty_like(rgb)
    for top in range(0, height, FIELD):
        rows = min(FIELD, height - top)
        block = cv2.add(np.ascontiguousarray(rgb[top : top + rows]), up[:rows])
        cv2.subtract(block, down[:rows], dst=out[top : top + rows])
    return out


def _weak_bits_after_edit(marked: np.ndarray, code: np.ndarray, key: int) -> np.ndarray | None:
    """Put the marked image through a typical platform edit (0.5x resize and back, then
    JPEG quality 50), read the bits, and say which came out weak (None if OpenCV fails)."""
    # The mark is pure luminance and JPEG codes luminance on its own, so the edit is
    # simulated on the grey image: the same bits, a third of the work.
    height, width = marked.shape[:2]
    grey = cv2.cvtColor(marked, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    edited = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", edited, [cv2.IMWRITE_JPEG_QUALITY, 50])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        return None
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if decoded is None:  # pragma: no cover - OpenCV decodes what it just encoded
        return None
    car = _carrier(key)
    soft = _soft_bits(_phase_spectrum(_fold(decoded.astype(np.float32))), (0, 0), car)
    return _weak(soft, code)


# ---------------------------------------------------------------------------------------
# Reading the field
# ---------------------------------------------------------------------------------------


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _highpass(luma: np.ndarray) -> np.ndarray:
    return luma - cv2.blur(luma, (9, 9), borderType=cv2.BORDER_REFLECT)


def _fold_sum(values: np.ndarray) -> np.ndarray:
    """Sum of all FIELD x FIELD cells of a 2-D array (cells cut by the edges count as
    zero-padded): accumulated cell by cell, with no padded copy of the whole image."""
    height, width = values.shape
    total = np.zeros((FIELD, FIELD), dtype=np.float32)
    for top in range(0, height, FIELD):
        for left in range(0, width, FIELD):
            cell = values[top : top + FIELD, left : left + FIELD]
            total[: cell.shape[0], : cell.shape[1]] += cell
    return total


def _fold(luma: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Average all FIELD x FIELD cells of the high-passed luminance into one.

    With a ``mask`` (1 = valid pixel, e.g. inside a rectified image) only valid pixels
    count; the mask is eroded first so the edge of the valid area adds no high-pass.
    """
    hp = _highpass(luma)
    if mask is None:
        height, width = hp.shape
        total = _fold_sum(hp)
        count_r = np.bincount(np.arange(height) % FIELD, minlength=FIELD).astype(np.float32)
        count_c = np.bincount(np.arange(width) % FIELD, minlength=FIELD).astype(np.float32)
        return total / np.maximum(count_r[:, None] * count_c[None, :], 1.0)
    inner = cv2.erode(mask, np.ones((11, 11), np.uint8)).astype(np.float32)
    count = _fold_sum(inner)
    return _fold_sum(hp * inner) / np.maximum(count, 1.0)


def _rfft2(values: np.ndarray) -> np.ndarray:
    """rfft2 of a real 2-D array through OpenCV's DFT (3-4x numpy's pocketfft here)."""
    full = cv2.dft(np.ascontiguousarray(values, dtype=np.float32), flags=cv2.DFT_COMPLEX_OUTPUT)
    half = full[:, : values.shape[1] // 2 + 1]
    return half[..., 0] + 1j * half[..., 1]


def _phase_spectrum(tile: np.ndarray) -> np.ndarray:
    spec = _rfft2(tile)
    mag = np.abs(spec)
    mag[mag == 0] = 1.0
    return spec / mag


def _pilot_correlation(phase: np.ndarray, car: _Carrier) -> np.ndarray:
    """Phase correlation of the fold with the pilot over all cyclic shifts (flattened)."""
    cross = np.zeros_like(phase)
    cross[car.pilot_rows, car.pilot_cols] = phase[car.pilot_rows, car.pilot_cols] * np.conj(
        car.pilot_phase
    )
    return np.fft.irfft2(cross, s=(FIELD, FIELD)).ravel()


def _pilot_z(phase: np.ndarray, car: _Carrier) -> float:
    """The best pilot peak's z-score alone (the geometry gate needs no offsets)."""
    corr = _pilot_correlation(phase, car)
    return (float(corr.max()) - float(corr.mean())) / (float(corr.std()) or 1.0)


def _pilot_peaks(phase: np.ndarray, car: _Carrier) -> tuple[list[tuple[int, int]], float]:
    """Cyclic offsets of the strongest pilot correlation peaks and the best peak's z-score."""
    corr = _pilot_correlation(phase, car)
    flat = np.argpartition(corr, -PILOT_CANDIDATES)[-PILOT_CANDIDATES:]
    flat = flat[np.argsort(corr[flat])[::-1]]
    peaks = [divmod(int(i), FIELD) for i in flat]
    z = (float(corr[flat[0]]) - float(corr.mean())) / (float(corr.std()) or 1.0)
    return [(int(r), int(c)) for r, c in peaks], z


def _agreement(
    phase: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    carrier: np.ndarray,
    offset: tuple[int, int],
) -> np.ndarray:
    """Phase agreement (cosine) of each coefficient with its carrier after undoing ``offset``."""
    dy, dx = offset
    row_shift, col_shift = _shift_phasors(dy, dx)
    shift = row_shift[rows] * col_shift[cols]
    return np.real(phase[rows, cols] * shift * np.conj(carrier))


def _shift_phasors(dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """exp(2 pi i f d / FIELD) per rfft row and column: a cyclic shift, separably."""
    fu = np.fft.fftfreq(FIELD, d=1.0 / FIELD)
    fv = np.arange(FIELD // 2 + 1)
    return np.exp(2j * np.pi * fu * dy / FIELD), np.exp(2j * np.pi * fv * dx / FIELD)


def _soft_bits(phase: np.ndarray, offset: tuple[int, int], car: _Carrier) -> np.ndarray:
    """Per-code-bit soft values after undoing the cyclic ``offset`` found by the pilot.

    Maximal-ratio combining: the pilot's known symbols show how well each frequency ring
    survived this particular image's edits (JPEG and resizing wipe the upper rings first),
    so each bit coefficient is weighted by its ring's mean pilot agreement.
    """
    pilot = _agreement(phase, car.pilot_rows, car.pilot_cols, car.pilot_phase, offset)
    sums = np.bincount(car.pilot_ring, weights=pilot, minlength=RINGS)
    counts = np.maximum(np.bincount(car.pilot_ring, minlength=RINGS), 1)
    ring_weight = np.maximum(sums / counts, 0.02)
    agree = _agreement(phase, car.bit_rows, car.bit_cols, car.bit_phase, offset)
    return np.bincount(
        car.bit_index, weights=agree * ring_weight[car.bit_ring], minlength=CODE_BITS
    )


def _chase_words(soft: np.ndarray, key: int) -> list[tuple[int, int, int]]:
    """Chase-II soft decoding: every distinct (payload, MAC, errors) that BCH accepts with
    up to CHASE_BITS of the least reliable bits flipped (the MAC check picks the real one)."""
    hard = soft < 0
    weakest = np.argsort(np.abs(soft))[:CHASE_BITS]
    words: dict[tuple[int, int], int] = {}
    for pattern in range(1 << CHASE_BITS):
        trial = hard.copy()
        flips = [int(weakest[i]) for i in range(CHASE_BITS) if pattern >> i & 1]
        trial[flips] ^= True
        decoded = _decode_bits(trial, key)
        if decoded is not None:
            payload, mac, errors = decoded
            best = words.get((payload, mac))
            if best is None or errors + len(flips) < best:
                words[(payload, mac)] = errors + len(flips)
    return [(p, m, e) for (p, m), e in words.items()]


def read_soft_bits(rgb: np.ndarray, *, key: int | None = None) -> tuple[np.ndarray, float]:
    """Soft code bits at the best pilot offset (for benchmarks and diagnostics)."""
    _check_rgb(rgb)
    car = _carrier(_resolve_key(key))
    phase = _phase_spectrum(_fold(_luma(rgb)))
    peaks, z = _pilot_peaks(phase, car)
    return _soft_bits(phase, peaks[0], car), z


def raw_payload_bits(rgb: np.ndarray, *, key: int | None = None) -> np.ndarray:
    """Hard-decision payload bits *before* error correction (for bit-accuracy benchmarks)."""
    secret = _resolve_key(key)
    soft, _ = read_soft_bits(rgb, key=secret)
    bits = (soft < 0).astype(np.uint8) ^ _carrier(secret).whitening
    return bits[:PAYLOAD_BITS]


#: Flip variants tried on every candidate geometry: name, row flip, column flip.
_FLIPS = ((None, False, False), ("horizontal", False, True), ("vertical", True, False),
          ("both", True, True))  # fmt: skip


def _oriented(array: np.ndarray, rows: bool, cols: bool) -> np.ndarray:
    if rows:
        array = array[::-1]
    if cols:
        array = array[:, ::-1]
    return array


def _view_origin(
    offset: tuple[int, int], shape: tuple[int, ...], flip_rows: bool, flip_cols: bool
) -> tuple[int, int]:
    """Pixels cut from the top and left of the (flipped) view, from a pilot offset found on
    the flipped fold: the fold of a view flipped along an axis of length n is the flipped
    fold rolled by n, so the roll is added back."""
    dy = (-offset[0] - (shape[0] - 1 if flip_rows else 0)) % FIELD
    dx = (-offset[1] - (shape[1] - 1 if flip_cols else 0)) % FIELD
    return int(dy), int(dx)


def _flipped_spectrum(spec: np.ndarray, flip_rows: bool, flip_cols: bool) -> np.ndarray:
    """rfft2 of the fold reversed along rows and/or columns (n -> -n mod FIELD), from the
    fold's own rfft2: reversing a real array's axis negates that frequency, and the rfft
    half-plane holds the negated column frequencies as complex conjugates."""
    out = spec
    if flip_rows != flip_cols:  # exactly one axis: negate the row frequency
        out = out[_NEGATED_ROWS]
    if flip_cols:
        out = np.conj(out)
    return out


_NEGATED_ROWS = (-np.arange(FIELD)) % FIELD


def _read(
    luma: np.ndarray,
    key: int,
    mask: np.ndarray | None,
    boxes: tuple[tuple[float, float, float, float], ...] = (),
) -> WatermarkResult:
    """Read the field of an image in (near) canonical geometry, trying the four flips.

    A flip of the image is a reversal of its fold up to a cyclic shift, which the pilot
    finds, so the four orientations cost one fold, one FFT and four pilot correlations.
    """
    car = _carrier(key)
    upright = _phase_spectrum(_fold(luma, mask))
    best = WatermarkResult(False, None, 0.0, reason="no synchronisation pilot")
    for name, flip_rows, flip_cols in _FLIPS:
        phase = _flipped_spectrum(upright, flip_rows, flip_cols)
        peaks, z = _pilot_peaks(phase, car)
        if z < PILOT_Z_MIN:
            if z > best.sync_z and best.reason != "payload failed error check":
                best = replace(best, sync_z=z)
            continue
        copied = False
        view = _oriented(luma, flip_rows, flip_cols)
        view_mask = None if mask is None else _oriented(mask, flip_rows, flip_cols)
        small: tuple[np.ndarray, np.ndarray, float] | None = None
        for offset in peaks:
            for payload, mac, errors in sorted(
                _chase_words(_soft_bits(phase, offset, car), key), key=lambda w: w[2]
            ):
                origin = _view_origin(offset, luma.shape, flip_rows, flip_cols)
                small = small or _small(view, view_mask)
                if not _mac_matches(payload, mac, key, view, small, origin, boxes):
                    copied = True
                    continue
                confidence = 1.0 - 0.5 * min(errors, BCH_T + 1) / (BCH_T + 1)
                return WatermarkResult(
                    True,
                    payload,
                    confidence,
                    bit_errors=errors,
                    sync_z=z,
                    offset=origin,
                    flip=name,
                )
        reason = (
            "a mark decoded but its MAC fails for this key and image (copied from another "
            "image, edited beyond recognition, or made with another key)"
            if copied
            else "payload failed error check"
        )
        if copied or best.reason == "no synchronisation pilot":
            best = WatermarkResult(False, None, 0.0, sync_z=max(z, best.sync_z), reason=reason)
    return best


def detect_watermark(
    rgb: np.ndarray, *, key: int | None = None, search_scale: bool = True
) -> WatermarkResult:
    """Look for a mark made with ``key`` for *this* image; never invents a payload.

    ``key`` None uses :func:`operator_key`. Flipped images are read directly. With
    ``search_scale`` (default), an image in which nothing is found as it is gets its
    rotation, scale, aspect and mirroring estimated from the sync template's spectral
    peaks, undone, and read again (one thread: ~20 ms for a marked 1024 px image as it
    is, ~200 ms more for an unmarked one); pass ``search_scale=False`` when only
    same-geometry copies matter.
    """
    _check_rgb(rgb)
    secret = _resolve_key(key)
    height, width = rgb.shape[:2]
    if min(height, width) < DETECT_MIN_SIDE:
        return WatermarkResult(
            False, None, 0.0, reason=f"image smaller than {DETECT_MIN_SIDE}x{DETECT_MIN_SIDE}"
        )
    luma = _luma(rgb)
    result = _read(luma, secret, None)
    if result.found or not search_scale or min(height, width) < GEOMETRY_MIN_SIDE:
        return result
    for matrix in _geometry_candidates(luma, secret):
        z, flip = _pilot_strength(luma, matrix, secret, _FLIPS)
        if z < GEOMETRY_Z_GATE or flip is None:
            continue
        found = _read_rectified(luma, matrix, secret)
        if not found.found:  # the template's spikes were too faint to place it precisely
            matrix = _climb(luma, matrix, secret, flip, z)
            found = _read_rectified(luma, matrix, secret)
        if found.found:
            scale = float(np.sqrt(abs(np.linalg.det(matrix))))
            angle = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
            return replace(found, scale=round(scale, 4), rotation=round(angle, 2))
        if found.reason and found.reason.startswith("a mark decoded"):
            result = found
    return result


def _read_rectified(luma: np.ndarray, matrix: np.ndarray, key: int) -> WatermarkResult:
    """Undo ``matrix`` and read the field, with the inscribed box as an extra extent."""
    rectified = _rectify(luma, matrix)
    if rectified is None:
        return WatermarkResult(False, None, 0.0, reason="no synchronisation pilot")
    box = _inscribed_box(matrix, luma.shape, rectified[0].shape)
    return _read(rectified[0], key, rectified[1], () if box is None else (box,))


_Flip = tuple[str | None, bool, bool]


def _pilot_strength(
    luma: np.ndarray, matrix: np.ndarray, key: int, flips: tuple[_Flip, ...]
) -> tuple[float, _Flip | None]:
    """Best pilot z-score (and its flip) of the image with ``matrix`` undone: the cheap
    test a geometry candidate must pass before any decoding, and the objective of
    :func:`_climb`."""
    rectified = _rectify(luma, matrix, FIELD)
    if rectified is None:
        return -1.0, None
    upright = _phase_spectrum(_fold(*rectified))
    car = _carrier(key)
    best: tuple[float, _Flip | None] = (-1.0, None)
    for flip in flips:
        z = _pilot_z(_flipped_spectrum(upright, flip[1], flip[2]), car)
        if z > best[0]:
            best = (z, flip)
    return best


#: Coordinate-ascent steps of :func:`_climb`: (rotation in radians, x/y scale factor - 1).
_CLIMB_STEPS = ((np.radians(0.2), 0.004), (np.radians(0.1), 0.002), (np.radians(0.05), 0.001))
_CLIMB_MAX_EVALS = 40


def _climb(luma: np.ndarray, matrix: np.ndarray, key: int, flip: _Flip, z: float) -> np.ndarray:
    """Sharpen a candidate map by coordinate ascent on the pilot's z-score.

    Why: on busy 512 px textures the template's spikes are barely above the host's
    spectrum, so the spectral estimate can be ~0.5 degree or ~0.8% off, which blurs the
    field's upper rings enough to lose bits; the pilot (hundreds of coefficients) measures
    the residual error far more sharply. Runs only on candidates whose pilot already
    stands out (GEOMETRY_Z_GATE) and whose first read failed.
    """
    evals = 0
    for step_angle, step_scale in _CLIMB_STEPS:
        moves = [(sign * step_angle, 0.0, 0.0) for sign in (1, -1)]
        moves += [(0.0, sign * step_scale, 0.0) for sign in (1, -1)]
        moves += [(0.0, 0.0, sign * step_scale) for sign in (1, -1)]
        improved = True
        while improved and evals < _CLIMB_MAX_EVALS:
            improved = False
            for angle, grow_x, grow_y in moves:
                c, s = np.cos(angle), np.sin(angle)
                trial = matrix @ np.array([[c, -s], [s, c]]) @ np.diag([1 + grow_x, 1 + grow_y])
                trial_z, _ = _pilot_strength(luma, trial, key, (flip,))
                evals += 1
                if trial_z > z + 0.05:
                    matrix, z, improved = trial, trial_z, True
                    break
    return matrix


# ---------------------------------------------------------------------------------------
# Geometry: the sync template's spectral peaks
# ---------------------------------------------------------------------------------------


def _rectify(
    luma: np.ndarray, matrix: np.ndarray, max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Undo ``matrix`` (canonical -> image, x/y columns): the image and its valid mask.

    ``max_side`` keeps only a central window of at most that many pixels per side (the
    field is periodic, so the pilot reads a window as well as the whole, far cheaper when
    a candidate scale blows the image up)."""
    height, width = luma.shape
    sx, sy = float(np.hypot(*matrix[:, 0])), float(np.hypot(*matrix[:, 1]))
    out_w, out_h = round(width / sx), round(height / sy)
    if min(out_w, out_h) < DETECT_MIN_SIDE or out_w * out_h > GEOMETRY_MAX_PIXELS:
        return None
    if max_side is not None:
        out_w, out_h = min(out_w, max_side), min(out_h, max_side)
    centre_in = np.array([(width - 1) / 2, (height - 1) / 2])
    centre_out = np.array([(out_w - 1) / 2, (out_h - 1) / 2])
    shift = centre_in - matrix @ centre_out
    warp = np.hstack([matrix, shift[:, None]]).astype(np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    image = cv2.warpAffine(luma, warp, (out_w, out_h), flags=flags, borderValue=0.0)
    ones = np.ones_like(luma, dtype=np.uint8)
    nearest = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    mask = cv2.warpAffine(ones, warp, (out_w, out_h), flags=nearest, borderValue=0)
    return image, mask


def _inscribed_box(
    matrix: np.ndarray, shape_in: tuple[int, int], shape_out: tuple[int, ...]
) -> tuple[float, float, float, float] | None:
    """The centred upright rectangle whose corners touch the edges of the input canvas as
    seen in the rectified frame: where the original lies when a rotation kept the whole
    image on a larger canvas (``expand``), an extent the crop hypotheses do not cover."""
    height, width = shape_in
    system = np.abs(matrix)
    try:
        half_x, half_y = np.linalg.solve(system, np.array([width / 2, height / 2]))
    except np.linalg.LinAlgError:
        return None
    if half_x <= 8 or half_y <= 8:
        return None
    cy, cx = (shape_out[0] - 1) / 2, (shape_out[1] - 1) / 2
    return (cy - half_y, cx - half_x, cy + half_y, cx + half_x)


@dataclass(frozen=True)
class _Spectrum:
    """Whitened power spectrum of a central crop: ``sharp`` to polish, ``coarse`` to search."""

    sharp: np.ndarray
    coarse: np.ndarray
    height: int
    width: int


def _spectrum(luma: np.ndarray) -> _Spectrum | None:
    """Log of the power spectrum divided by its local mean (natural images' 1/f falls away;
    the template's spikes stay), over a Hann-windowed central crop of the high-pass."""
    height, width = luma.shape
    ch, cw = min(height, GEOMETRY_CROP), min(width, GEOMETRY_CROP)
    top, left = (height - ch) // 2, (width - cw) // 2
    hp = _highpass(luma[top : top + ch, left : left + cw])
    window = np.outer(np.hanning(ch), np.hanning(cw)).astype(np.float32)
    power = np.abs(_rfft2(hp * window)).astype(np.float32) ** 2
    local = cv2.blur(power, (15, 15), borderType=cv2.BORDER_REFLECT)
    if not float(local.max()) > 0:
        return None
    # cv2.blur's running sums can dip a hair below 0 where the power is ~0: floor it.
    ratio = power / np.maximum(local, 1e-12)
    fine = np.log1p(np.clip(ratio, 0.0, 60.0)).astype(np.float32)
    sharp = cv2.GaussianBlur(fine, (0, 0), 0.7).astype(np.float64)
    coarse = cv2.GaussianBlur(fine, (0, 0), 1.5).astype(np.float64)
    return _Spectrum(sharp, coarse, ch, cw)


def _lookup(grid: np.ndarray, spec: _Spectrum, freqs: np.ndarray) -> np.ndarray:
    """Values of an rfft2-shaped map at frequencies ``freqs`` (..., 2: fx, fy cycles/px)."""
    fx, fy = freqs[..., 0], freqs[..., 1]
    neg = fx < 0
    fx, fy = np.where(neg, -fx, fx), np.where(neg, -fy, fy)
    cols = np.clip(fx * spec.width, 0, grid.shape[1] - 1.001)
    rows = fy * spec.height
    return _bilinear(grid, rows, cols)


def _grid_scores(spec: _Spectrum, freqs: np.ndarray) -> np.ndarray:
    """Score of every candidate map: ``freqs`` (M, K, 2) are the template's frequencies
    under each; the score is the mean smoothed whitened power at them (nearest bin: the
    smoothed map varies slowly)."""
    fx, fy = freqs[..., 0], freqs[..., 1]
    neg = fx < 0
    cols = np.rint(np.where(neg, -fx, fx) * spec.width).astype(np.intp)
    rows = np.rint(np.where(neg, -fy, fy) * spec.height).astype(np.intp) % spec.height
    np.clip(cols, 0, spec.coarse.shape[1] - 1, out=cols)
    return spec.coarse[rows, cols].mean(axis=-1)


@lru_cache(maxsize=8)
def _search_freqs(key: int) -> tuple[tuple[bool, np.ndarray, np.ndarray], ...]:
    """Per (mirror, grid): the candidate maps and the template frequencies under each."""
    template = _template(key)[0]
    out = []
    for flipped in (False, True):
        t = template * np.array([-1.0, 1.0]) if flipped else template
        for grid in _search_grids():
            freqs = np.einsum("mij,kj->mki", grid, t)
            freqs.setflags(write=False)
            out.append((flipped, grid, freqs))
    return tuple(out)


@lru_cache(maxsize=2)
def _search_grids() -> tuple[np.ndarray, np.ndarray]:
    """Frequency maps B = A^-T to try: rotation x uniform scale, and x/y scale (aspect)."""
    scales = np.exp(np.arange(np.log(GEOMETRY_SCALES[0]), np.log(GEOMETRY_SCALES[1]), 0.01))
    angles = np.radians(np.arange(-GEOMETRY_ANGLE, GEOMETRY_ANGLE + 1e-9, 0.5))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    inv = 1.0 / scales[None, :]
    rot = np.stack([np.stack([c * inv, -s * inv], -1), np.stack([s * inv, c * inv], -1)], -2)
    coarse = np.exp(np.arange(np.log(GEOMETRY_SCALES[0]), np.log(GEOMETRY_SCALES[1]), 0.02))
    ix, iy = np.meshgrid(1.0 / coarse, 1.0 / coarse, indexing="ij")
    zero = np.zeros_like(ix)
    aspect = np.stack([np.stack([ix, zero], -1), np.stack([zero, iy], -1)], -2)
    out = (rot.reshape(-1, 2, 2), aspect.reshape(-1, 2, 2))
    for arr in out:
        arr.setflags(write=False)
    return out


#: Rounds of :func:`_polish`: (rotation step in degrees, x/y scale step), 5 x 5 x 5 each.
_POLISH_STEPS = ((0.25, 0.006), (0.1, 0.0025), (0.04, 0.001))


@lru_cache(maxsize=4)
def _polish_grid(step_angle: float, step_scale: float) -> np.ndarray:
    """Small corrections (rotation x x scale x y scale, +-2 steps each) of a frequency map."""
    angles = np.radians(np.arange(-2, 3) * step_angle)
    scales = np.exp(np.arange(-2, 3) * step_scale)
    theta, grow_x, grow_y = (a.ravel() for a in np.meshgrid(angles, scales, scales, indexing="ij"))
    c, s = np.cos(theta), np.sin(theta)
    out = np.stack(
        [np.stack([c * grow_x, -s * grow_y], -1), np.stack([s * grow_x, c * grow_y], -1)], -2
    )
    out.setflags(write=False)
    return out


def _polish(spec: _Spectrum, template: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Refine ``b`` below the search grid's 0.5 degree / 1-2% steps, scoring each small
    correction by interpolated whitened power at all the template's spikes together
    (robust where single spikes are lost in a texture's spectrum, unlike locating each
    spike on its own)."""
    for steps in _POLISH_STEPS:
        trials = np.einsum("ij,mjk->mik", b, _polish_grid(*steps))
        freqs = np.einsum("mij,kj->mki", trials, template)
        b = trials[int(np.argmax(_lookup(spec.sharp, spec, freqs).mean(axis=-1)))]
    return b


def _spectral_maxima(spec: _Spectrum, key: int) -> list[tuple[bool, np.ndarray]]:
    """The GEOMETRY_CANDIDATES best distinct (mirror, frequency map) pairs of the grid
    search: distinct local maxima, since a textured image's true map can rank below a
    few chance alignments of the template with the host's own spectral peaks."""
    pooled: list[tuple[float, bool, np.ndarray]] = []
    for flipped, grid, freqs in _search_freqs(key):
        score = _grid_scores(spec, freqs)
        top = np.argpartition(score, -64)[-64:]
        pooled.extend((float(score[i]), flipped, grid[i]) for i in top)
    pooled.sort(key=lambda item: item[0], reverse=True)
    kept: list[tuple[bool, np.ndarray]] = []
    for _, flipped, b in pooled:
        if any(f == flipped and np.abs(b - other).max() < 0.03 for f, other in kept):
            continue
        kept.append((flipped, b))
        if len(kept) == GEOMETRY_CANDIDATES:
            break
    return kept


def _geometry_candidates(luma: np.ndarray, key: int) -> list[np.ndarray]:
    """Candidate linear maps (canonical -> image) from the sync template, best first.

    The template is a few keyed sinusoids, i.e. spikes in the magnitude spectrum that move
    with the image: a linear map A sends frequency t to A^-T t. A coarse grid over rotation
    (+-GEOMETRY_ANGLE degrees), x and y scale, with and without a mirror, scores the
    smoothed whitened spectrum at the predicted spikes; the best distinct maps are then
    polished on a finer local grid. Near-identity maps are dropped (the image was already
    read as it is). The pilot decides which candidate, if any, is real.
    """
    spec = _spectrum(luma)
    if spec is None:
        return []
    template = _template(key)[0]
    mirror = np.diag([-1.0, 1.0])
    out: list[np.ndarray] = []
    for flipped, b in _spectral_maxima(spec, key):
        fine_b = _polish(spec, template @ mirror if flipped else template, b)
        matrix = np.linalg.inv(fine_b).T @ (mirror if flipped else np.eye(2))
        if any(np.abs(matrix - other).max() < 3e-3 for other in out):
            continue
        if np.abs(matrix - np.eye(2)).max() < 1e-3:
            continue
        out.append(matrix)
    return out


def _bilinear(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Values of a 2-D array at fractional positions (rows wrap around)."""
    h, w = grid.shape
    yf, xf = np.mod(ys, h), np.mod(xs, w)
    y0, x0 = np.floor(yf).astype(np.intp), np.floor(xf).astype(np.intp)
    dy, dx = yf - y0, xf - x0
    y1, x1 = (y0 + 1) % h, (x0 + 1) % w
    return (
        grid[y0, x0] * (1 - dy) * (1 - dx)
        + grid[y1, x0] * dy * (1 - dx)
        + grid[y0, x1] * (1 - dy) * dx
        + grid[y1, x1] * dy * dx
    )
