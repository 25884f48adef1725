"""Invisible, keyed watermark for generated images: tiled spread-spectrum in luminance.

Algorithm (designed for genguard; see docs/provenance.md for the measured numbers):

* **Carrier.** One ``TILE`` x ``TILE`` pixel tile is defined in the 2-D Fourier domain.
  A keyed PRNG picks every coefficient whose radius lies in a low/mid band (``BAND``
  cycles per tile, i.e. roughly 0.02-0.2 cycles per pixel: low enough to survive JPEG
  and a 0.5x-resize-and-back, high enough to stay out of the image's strongest content),
  gives each one a random phase, and splits them into a *pilot* set and one set per code
  bit. The tile is repeated over the whole image at a fixed pixel scale and added to the
  luminance only (R, G and B move together, so colours do not shift).
* **Payload.** 32 bits + a keyed 16-bit CRC are protected by a BCH code (``bchlib``),
  whitened with a keyed bit mask and mapped to +-1 signs of the bit coefficients.
* **Detection.** The luminance is high-passed, then *folded*: every tile is averaged into
  one, which adds the mark coherently and the image incoherently. A cross-correlation of
  the folded tile's phase spectrum with the pilot finds the cyclic offset (so crops and
  shifts do not matter), the spectrum is realigned, each bit is read as the summed
  phase agreement of its coefficients (weighted by how well the pilot survived in its
  frequency ring), and the BCH + CRC must both accept the word (Chase soft decoding).
  An unmarked image therefore yields ``found=False`` instead of an invented payload: a
  random word passes BCH (t=9 over 111 bits) with p = 6e-7 and the keyed CRC-16 with
  2^-16, so even over the 192 tries per image (up to 4 scales x 3 pilot peaks x 16
  Chase flips) the false-detection probability is below 2e-9 per image.
* **Kept rescales.** When nothing is found, the tile period is looked for in the
  image's autocorrelation; a period other than TILE means the image was resized and
  kept at the new size, so it is resampled back and read again.
* **Embedding is informed.** The embedder folds the host the same way the detector will
  and raises the amplitude of the code bits that the image itself works against, at a
  fixed total energy (see ``_bit_boosts``).

All functions are pure and the keyed carrier is cached (read-only arrays), so calls are
thread-safe and cheap to repeat.
"""

from __future__ import annotations

import binascii
import hashlib
import threading
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import bchlib
import cv2
import numpy as np

from genguard.errors import ContentError, GenguardError

#: Tile side in pixels: the mark repeats with this period, so any crop keeps whole periods.
TILE = 128
#: Radius band of the carrier in cycles per tile (inclusive low, exclusive high).
BAND = (6.0, 32.0)
#: Frequency rings over which the detector estimates how well the mark survived.
RINGS = 6
#: Share of the band's coefficients given to the synchronisation pilot.
PILOT_SHARE = 0.3
#: Payload size: 32 bits (an int below 2**32 or up to 4 bytes).
PAYLOAD_BITS = 32
PAYLOAD_BYTES = PAYLOAD_BITS // 8
#: Default key; deployments should choose their own so that others cannot read the mark.
DEFAULT_KEY = 0x67_67_77_6D  # "ggwm"
#: Default strength: RMS of the luminance change in 8-bit levels (about 42 dB PSNR).
DEFAULT_STRENGTH = 2.0
#: Smallest image side accepted by :func:`embed_watermark` (two tiles).
MIN_SIDE = 2 * TILE
#: BCH parameters: GF(2^7) (n <= 127 bits), corrects up to 9 bit errors.
BCH_M = 7
BCH_T = 9
#: Pilot correlation z-score below which no decoding is attempted.
PILOT_Z_MIN = 4.0
#: Number of strongest pilot peaks tried before giving up.
PILOT_CANDIDATES = 3
#: Informed embedding: each bit's predicted phase agreement should reach this share of
#: its coefficient count; amplitudes are raised by factors from this grid until it does.
BOOST_TARGET = 0.3
BOOST_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
#: Factor for bits that miss the target even at the largest boost (ECC will fix them).
BOOST_HOPELESS = 4.0
#: Closed-loop embedding: bits whose margin after a simulated edit is below LOOP_MARGIN x
#: the median soft value get LOOP_BOOST times more amplitude in a second pass.
CLOSED_LOOP = True
LOOP_MARGIN = 0.5
LOOP_BOOST = 1.6
#: Soft decoding: number of least reliable bits whose flips are tried (Chase-II).
CHASE_BITS = 4

#: Scale search: lag range (pixels) of the tile period, i.e. rescales by 0.31x..1.56x;
#: autocorrelation peak z-score needed to try a candidate; most candidates tried; crop
#: side used for the autocorrelation; size limits.
SCALE_LAGS = (40, 200)
SCALE_Z_MIN = 4.0
SCALE_CANDIDATES = 3
SCALE_CROP = 768
SCALE_MIN_SIDE = 64
SCALE_MAX_PIXELS = 40_000_000

_CRC_BITS = 16
_DATA_BYTES = PAYLOAD_BYTES + _CRC_BITS // 8


class WatermarkError(GenguardError):
    """A watermark cannot be embedded: payload invalid or image too small."""

    code = "bad_watermark"


@dataclass(frozen=True)
class WatermarkResult:
    """Outcome of :func:`detect_watermark`.

    ``confidence`` is 1.0 for a clean read and falls towards 0.5 as the BCH decoder has to
    correct more bit errors; it is 0.0 when nothing was found. ``sync_z`` is the pilot
    correlation peak in standard deviations (above ~6 means a mark of this key is present).
    ``scale`` is set when the mark was found only after undoing a kept rescale (e.g. 0.75
    for an image served at 75% of its marked size); ``offset`` is then in resampled pixels.
    """

    found: bool
    payload: int | None
    confidence: float
    bit_errors: int | None = None
    sync_z: float = 0.0
    offset: tuple[int, int] | None = None
    scale: float | None = None
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
# Payload coding
# ---------------------------------------------------------------------------------------

_bch_lock = threading.Lock()
_bch = bchlib.BCH(BCH_T, m=BCH_M)
#: Code length in bits: data + CRC + BCH parity.
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


def _crc(payload: int, key: int) -> int:
    """Keyed CRC-16: ties the check bits to the key, so another key's mark fails the check."""
    return binascii.crc_hqx(payload.to_bytes(PAYLOAD_BYTES, "big"), key & 0xFFFF)


def _encode_bits(payload: int, key: int) -> np.ndarray:
    """Payload -> whitened code word of CODE_BITS bits (uint8 0/1)."""
    data = payload.to_bytes(PAYLOAD_BYTES, "big") + _crc(payload, key).to_bytes(2, "big")
    with _bch_lock:
        ecc = _bch.encode(data)
    bits = np.unpackbits(np.frombuffer(data + bytes(ecc), dtype=np.uint8))[:CODE_BITS]
    return bits ^ _carrier(key).whitening


def _decode_bits(bits: np.ndarray, key: int) -> tuple[int, int] | None:
    """Whitened hard bits -> (payload, corrected errors), or None when BCH or CRC reject."""
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
    if int.from_bytes(data[PAYLOAD_BYTES:], "big") != _crc(payload, key):
        return None
    return payload, int(nerr)


# ---------------------------------------------------------------------------------------
# Carrier
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Carrier:
    """Keyed carrier of one key; arrays are read-only so threads can share them."""

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


@lru_cache(maxsize=16)
def _carrier(key: int) -> _Carrier:
    """Build (once per key) the keyed assignment of band coefficients to pilot and bits."""
    if not isinstance(key, int) or key < 0 or key >= 1 << 64:
        raise WatermarkError("key must be an integer between 0 and 2**64-1")
    rng = np.random.default_rng([key, 0x5EED])
    fu = np.fft.fftfreq(TILE, d=1.0 / TILE)[:, None]  # rows: -64..63 cycles per tile
    fv = np.arange(TILE // 2 + 1)[None, :]  # rfft columns: 0..64
    radius = np.hypot(fu, fv)
    # Columns 0 and TILE/2 are their own mirror in rfft2; leaving them out keeps every
    # chosen coefficient independent (its conjugate twin is implied).
    usable = (radius >= BAND[0]) & (radius < BAND[1]) & (fv > 0) & (fv < TILE // 2)
    rows, cols = np.nonzero(usable)
    order = rng.permutation(rows.size)
    rows, cols = rows[order], cols[order]
    phase = np.exp(1j * rng.uniform(0.0, 2 * np.pi, rows.size))
    n_pilot = int(rows.size * PILOT_SHARE)
    n_bits = rows.size - n_pilot
    bit_index = np.arange(n_bits) % CODE_BITS
    whitening = rng.integers(0, 2, CODE_BITS, dtype=np.uint8)
    ring = ((radius[rows, cols] - BAND[0]) / (BAND[1] - BAND[0]) * RINGS).astype(np.intp)
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


@lru_cache(maxsize=4)
def _highpass_gain() -> np.ndarray:
    """Frequency response of the detector's high-pass (luma minus a 9x9 box mean) per rfft bin."""
    f = np.fft.fftfreq(TILE)
    box = np.ones_like(f)
    nz = f != 0
    box[nz] = np.sin(9 * np.pi * f[nz]) / (9 * np.sin(np.pi * f[nz]))
    gain = 1.0 - box[:, None] * box[None, : TILE // 2 + 1]
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


def _tile_pattern(
    host: np.ndarray,
    payload: int,
    key: int,
    strength: float,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Spatial mark tile (RMS = ``strength``) for one payload, adapted to the host image.

    ``host`` is the rfft2 of the host's folded luminance (what the detector will see).
    ``extra`` multiplies the amplitude of individual code bits (closed-loop pass).
    """
    car = _carrier(key)
    signs = 1.0 - 2.0 * _encode_bits(payload, key).astype(np.float64)
    directions = car.bit_phase * signs[car.bit_index]
    n_coef = car.pilot_rows.size + car.bit_rows.size
    # Parseval for rfft2 (each chosen bin has a mirrored twin): RMS = amp * sqrt(2n) / T^2.
    amp = strength * TILE * TILE / np.sqrt(2.0 * n_coef)
    # The pilot keeps its share of the energy; the bits share the rest. Boosting some bits
    # lowers the amplitude of the others (the RMS is fixed), so iterate.
    n_bits = car.bit_rows.size
    scale = 1.0
    for _ in range(3):
        boost = _bit_boosts(host, directions, amp * scale, key)
        if extra is not None:
            boost = boost * extra
        scale = np.sqrt(n_bits / np.sum(boost[car.bit_index] ** 2))
    boost *= scale
    spec = np.zeros((TILE, TILE // 2 + 1), dtype=np.complex128)
    spec[car.pilot_rows, car.pilot_cols] = car.pilot_phase
    spec[car.bit_rows, car.bit_cols] = directions * boost[car.bit_index]
    tile = np.fft.irfft2(spec, s=(TILE, TILE))
    tile *= strength / np.sqrt(np.mean(tile**2))
    return tile.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def _chase_decode(soft: np.ndarray, key: int) -> tuple[int, int] | None:
    """Chase-II soft decoding: retry BCH with the least reliable bits flipped.

    Returns (payload, bit errors corrected incl. flips). Each retry is one more chance for
    noise to pass, so the count stays small (2**CHASE_BITS); with BCH + a 16-bit CRC the
    false-detection rate stays below 2e-9 per image (module docstring).
    """
    hard = soft < 0
    weakest = np.argsort(np.abs(soft))[:CHASE_BITS]
    for pattern in range(1 << CHASE_BITS):
        trial = hard.copy()
        flips = [int(weakest[i]) for i in range(CHASE_BITS) if pattern >> i & 1]
        trial[flips] ^= True
        decoded = _decode_bits(trial, key)
        if decoded is not None:
            payload, errors = decoded
            return payload, errors + len(flips)
    return None


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
    key: int = DEFAULT_KEY,
    strength: float = DEFAULT_STRENGTH,
) -> np.ndarray:
    """Return a copy of ``rgb`` (HxWx3 uint8) carrying the 32-bit ``payload``.

    ``strength`` is the RMS luminance change in 8-bit levels (2.0 gives ~42 dB PSNR);
    raise it for more robustness, lower it for more transparency. Raises
    :class:`WatermarkError` for payloads over 32 bits and images under 256x256 pixels.
    """
    _check_rgb(rgb)
    value = normalise_payload(payload)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise WatermarkError(
            f"image is {width}x{height}; the watermark needs at least {MIN_SIDE}x{MIN_SIDE} "
            f"pixels to carry a {PAYLOAD_BITS}-bit payload robustly"
        )
    if not 0.0 < strength <= 20.0:
        raise WatermarkError(f"strength must be in (0, 20], got {strength}")
    host = np.fft.rfft2(_fold(_luma(rgb)))
    out = _apply(rgb, _tile_pattern(host, value, key, strength))
    if CLOSED_LOOP:
        extra = _weak_bits_after_edit(out, value, key)
        if extra is not None:
            out = _apply(rgb, _tile_pattern(host, value, key, strength, extra))
    return out


def _apply(rgb: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """Add the tiled mark to R, G and B alike (a pure luminance change).

    Works one tile row at a time in int16, so a 64-megapixel image needs a few MB of
    scratch space instead of gigabytes; rint(pixel + mark) == pixel + rint(mark) because
    pixels are integers, so rounding the tile first changes nothing.
    """
    height, width = rgb.shape[:2]
    reps = -(-width // TILE)
    row_mark = np.tile(np.rint(tile).astype(np.int16), (1, reps))[:, :width, None]
    out = np.empty_like(rgb)
    for top in range(0, height, TILE):
        block = rgb[top : top + TILE].astype(np.int16)
        block += row_mark[: block.shape[0]]
        np.clip(block, 0, 255, out=block)
        out[top : top + TILE] = block
    return out


def _weak_bits_after_edit(marked: np.ndarray, payload: int, key: int) -> np.ndarray | None:
    """Closed loop: put the marked image through a typical platform edit (0.5x resize and
    back, then JPEG quality 50), read the bits, and return amplitude factors that raise the
    bits that came out weak; None when all bits are comfortable."""
    height, width = marked.shape[:2]
    small = cv2.resize(marked, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    edited = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", edited[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        return None
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:  # pragma: no cover - OpenCV decodes what it just encoded
        return None
    edited = decoded[:, :, ::-1]
    car = _carrier(key)
    soft = _soft_bits(_phase_spectrum(_fold(_luma(edited))), (0, 0), car)
    signs = 1.0 - 2.0 * _encode_bits(payload, key).astype(np.float64)
    margin = soft * signs
    scale = float(np.median(np.abs(soft))) + 1e-9
    weak = margin < LOOP_MARGIN * scale
    if not weak.any():
        return None
    extra = np.ones(CODE_BITS)
    extra[weak] = LOOP_BOOST
    return extra


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) if rgb.shape[2] == 3 else rgb


def _fold(luma: np.ndarray) -> np.ndarray:
    """Average all TILE x TILE tiles of the high-passed luminance into one tile."""
    hp = luma - cv2.blur(luma, (9, 9), borderType=cv2.BORDER_REFLECT)
    height, width = hp.shape
    ph, pw = -(-height // TILE) * TILE, -(-width // TILE) * TILE
    padded = np.zeros((ph, pw), dtype=np.float32)
    padded[:height, :width] = hp
    total = padded.reshape(ph // TILE, TILE, pw // TILE, TILE).sum(axis=(0, 2))
    count_r = np.bincount(np.arange(height) % TILE, minlength=TILE).astype(np.float32)
    count_c = np.bincount(np.arange(width) % TILE, minlength=TILE).astype(np.float32)
    return total / (count_r[:, None] * count_c[None, :])


def _phase_spectrum(tile: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft2(tile)
    mag = np.abs(spec)
    mag[mag == 0] = 1.0
    return spec / mag


def _pilot_peaks(phase: np.ndarray, car: _Carrier) -> tuple[list[tuple[int, int]], float]:
    """Cyclic offsets of the strongest pilot correlation peaks and the best peak's z-score."""
    cross = np.zeros_like(phase)
    cross[car.pilot_rows, car.pilot_cols] = phase[car.pilot_rows, car.pilot_cols] * np.conj(
        car.pilot_phase
    )
    corr = np.fft.irfft2(cross, s=(TILE, TILE))
    std = float(corr.std()) or 1.0
    z = (corr - float(corr.mean())) / std
    flat = np.argsort(z, axis=None)[::-1][:PILOT_CANDIDATES]
    peaks = [divmod(int(i), TILE) for i in flat]
    return [(int(r), int(c)) for r, c in peaks], float(z.flat[flat[0]])


def _agreement(
    phase: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    carrier: np.ndarray,
    offset: tuple[int, int],
) -> np.ndarray:
    """Phase agreement (cosine) of each coefficient with its carrier after undoing ``offset``."""
    dy, dx = offset
    fu = np.fft.fftfreq(TILE, d=1.0 / TILE)[rows]
    shift = np.exp(2j * np.pi * (fu * dy + cols * dx) / TILE)
    return np.real(phase[rows, cols] * shift * np.conj(carrier))


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


def read_soft_bits(rgb: np.ndarray, *, key: int = DEFAULT_KEY) -> tuple[np.ndarray, float]:
    """Soft code bits at the best pilot offset (for benchmarks and diagnostics)."""
    _check_rgb(rgb)
    car = _carrier(key)
    phase = _phase_spectrum(_fold(_luma(rgb)))
    peaks, z = _pilot_peaks(phase, car)
    return _soft_bits(phase, peaks[0], car), z


def raw_payload_bits(rgb: np.ndarray, *, key: int = DEFAULT_KEY) -> np.ndarray:
    """Hard-decision payload bits *before* error correction (for bit-accuracy benchmarks)."""
    soft, _ = read_soft_bits(rgb, key=key)
    bits = (soft < 0).astype(np.uint8) ^ _carrier(key).whitening
    return bits[:PAYLOAD_BITS]


def detect_watermark(
    rgb: np.ndarray, *, key: int = DEFAULT_KEY, search_scale: bool = True
) -> WatermarkResult:
    """Look for a mark made with ``key``; never invents a payload for unmarked images.

    With ``search_scale`` (default), an image in which nothing is found at its own scale
    is checked for a rescale that was *kept* (e.g. a 1024 px image served at 600 px): the
    mark's tile period shows up as an autocorrelation peak, the image is resampled back
    to the original pixel scale and read again. This costs ~10-30 ms more on unmarked
    images; pass ``search_scale=False`` when only same-size copies matter.
    """
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    result = _detect_at_scale(rgb, key) if min(height, width) >= TILE else None
    if result is not None and result.found:
        return result
    if search_scale and min(height, width) >= SCALE_MIN_SIDE:
        for factor in _scale_candidates(_luma(rgb)):
            size = (round(width / factor), round(height / factor))
            if min(size) < TILE or size[0] * size[1] > SCALE_MAX_PIXELS:
                continue
            resized = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
            found = _detect_at_scale(resized, key)
            if found.found:
                return replace(found, scale=round(factor, 4))
    if result is None:
        return WatermarkResult(False, None, 0.0, reason=f"image smaller than {TILE}x{TILE}")
    return result


def _scale_candidates(luma: np.ndarray) -> list[float]:
    """Scale factors the image may have been resized by (and kept at), most likely first.

    The mark repeats every TILE pixels, so a resized marked image has autocorrelation
    peaks on a lattice with spacing TILE*s. The partly whitened autocorrelation of a
    central crop takes one FFT; each candidate period on a 0.25 px grid is scored by
    summing the (bilinearly interpolated) autocorrelation over 12 lattice points, sharp
    peaks are isolated by subtracting a running median, and the best few (z >=
    SCALE_Z_MIN) are returned. Sub-pixel precision matters because a period error adds up
    over the folded tiles. The full detector (pilot, BCH, CRC) decides which, if any, is real.
    """
    height, width = luma.shape
    ch, cw = min(height, SCALE_CROP), min(width, SCALE_CROP)
    top, left = (height - ch) // 2, (width - cw) // 2
    crop = luma[top : top + ch, left : left + cw]
    hp = crop - cv2.blur(crop, (9, 9), borderType=cv2.BORDER_REFLECT)
    acorr = np.fft.irfft2(np.sqrt(np.abs(np.fft.rfft2(hp))), s=hp.shape)
    periods = np.arange(SCALE_LAGS[0], SCALE_LAGS[1], 0.25)
    score = np.zeros_like(periods)
    for i, j in _LATTICE:
        ys, xs = i * periods, j * periods
        inside = (np.abs(ys) < ch / 2) & (np.abs(xs) < cw / 2)
        score += np.where(inside, _bilinear(acorr, ys, xs), 0.0)
    if not score.any():
        return []
    score -= _running_median(score, 41)
    centre = float(np.median(score))
    spread = 1.4826 * float(np.median(np.abs(score - centre)))
    if spread <= 0:
        return []
    z = (score - centre) / spread
    found: list[float] = []
    for idx in np.argsort(z)[::-1]:
        if z[idx] < SCALE_Z_MIN or len(found) >= SCALE_CANDIDATES:
            break
        period = float(periods[idx])
        if abs(period / TILE - 1.0) < 0.003 or any(abs(period - f * TILE) < 2 for f in found):
            continue  # the original scale (already tried) or the same peak again
        found.append(period / TILE)
    return found


#: Lattice points (in periods) summed by the scale search: both axes, diagonals, doubles.
_LATTICE = (
    (1, 0),
    (0, 1),
    (1, 1),
    (1, -1),
    (2, 0),
    (0, 2),
    (2, 1),
    (1, 2),
    (2, -1),
    (1, -2),
    (2, 2),
    (2, -2),
)


def _bilinear(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Values of a periodic 2-D array at fractional positions (wrapping around)."""
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


def _running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median over a sliding window (edges padded by reflection)."""
    pad = window // 2
    padded = np.pad(values, pad, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    return np.median(windows, axis=1)


def _detect_at_scale(rgb: np.ndarray, key: int) -> WatermarkResult:
    """Detection at the image's own pixel scale (see the module docstring)."""
    car = _carrier(key)
    phase = _phase_spectrum(_fold(_luma(rgb)))
    peaks, z = _pilot_peaks(phase, car)
    if z < PILOT_Z_MIN:
        return WatermarkResult(False, None, 0.0, sync_z=z, reason="no synchronisation pilot")
    for offset in peaks:
        decoded = _chase_decode(_soft_bits(phase, offset, car), key)
        if decoded is not None:
            payload, errors = decoded
            confidence = 1.0 - 0.5 * min(errors, BCH_T + 1) / (BCH_T + 1)
            return WatermarkResult(
                True,
                payload,
                confidence,
                bit_errors=errors,
                sync_z=z,
                offset=((-offset[0]) % TILE, (-offset[1]) % TILE),
            )
    return WatermarkResult(False, None, 0.0, sync_z=z, reason="payload failed error check")
