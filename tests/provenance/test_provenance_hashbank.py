"""PDQ hash banks: hashing, matching near-duplicates, files, index fallback, bad input."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from genguard.provenance import hashbank as hb
from genguard.provenance.hashbank import HashBank, HashBankError, pdq_hash

from .conftest import photo


def jpeg(rgb: np.ndarray, quality: int = 70) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def flip_bits(hex_hash: str, n: int, seed: int = 0) -> str:
    """The hash with exactly ``n`` distinct bits flipped."""
    value = int(hex_hash, 16)
    for bit in np.random.default_rng(seed).choice(256, n, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"


def test_pdq_hash_format_and_near_duplicates() -> None:
    original, quality = pdq_hash(photo("astronaut"))
    assert len(original) == 64 and int(original, 16) >= 0 and quality >= 50
    h, w = photo("astronaut").shape[:2]
    copies = [
        jpeg(photo("astronaut"), 40),
        cv2.resize(photo("astronaut"), (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        np.ascontiguousarray(photo("astronaut")[4:-4, 5:-5]),  # PDQ is crop-sensitive
    ]
    for copy in copies:
        assert hb.hamming(original, pdq_hash(copy)[0]) <= 31
    for other in ("coffee", "chelsea", "rocket"):
        assert hb.hamming(original, pdq_hash(photo(other))[0]) > 64


def test_match_is_inclusive_and_nearest_first() -> None:
    base = pdq_hash(photo("coffee"))[0]
    bank = HashBank()
    bank.add("d31", flip_bits(base, 31, 1))
    bank.add("d32", flip_bits(base, 32, 2))
    bank.add("d5", flip_bits(base, 5, 3))
    bank.add("exact", base, {"quality": 100, "source": "unit"})
    found = bank.match(base)
    assert [(m.entry.name, m.distance) for m in found] == [("exact", 0), ("d5", 5), ("d31", 31)]
    assert [m.entry.name for m in bank.match(base, threshold=5)] == ["exact", "d5"]
    assert bank.nearest(flip_bits(base, 40, 9)).entry.name == "exact"  # type: ignore[union-attr]
    assert found[0].to_dict()["source"] == "unit"


def test_index_kinds_and_numpy_fallback_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    query = codes[1234].copy()
    query[:3] ^= 0b1011  # 9 bits away from row 1234
    near = codes[77].copy()
    near[:4] = ~near[:4]  # exactly 31 bits away from row 77 (4 bytes inverted, one restored)
    near[0] ^= 0x01
    banks = [HashBank(index="flat"), HashBank(index="mih")]
    for bank in banks:
        bank.add_codes(codes)
    monkeypatch.setattr(hb, "faiss", None)
    banks.append(HashBank())
    banks[-1].add_codes(codes)
    results = []
    for bank in banks:
        wide = bank.match(query.tobytes().hex(), threshold=100)
        edge = bank.match(near.tobytes().hex())
        best = bank.nearest(query.tobytes().hex())
        results.append(
            (
                [(m.entry.name, m.distance) for m in wide],
                [(m.entry.name, m.distance) for m in edge],
                (best.entry.name, best.distance) if best else None,
            )
        )
    assert results[0] == results[1] == results[2]
    assert results[0][0][0] == ("h1234", 9) and results[0][1] == [("h77", 31)]
    with pytest.raises(HashBankError, match="index must be"):
        HashBank(index="ivf")


def test_bank_file_round_trip(tmp_path) -> None:
    bank = HashBank()
    for name in ("astronaut", "rocket"):
        h, q = pdq_hash(photo(name))
        bank.add(name, h, {"quality": q, "source": 'a,b "quoted"'})
    path = tmp_path / "banned.bank"
    bank.save(path)
    assert path.read_text().startswith(hb.BANK_HEADER)
    loaded = HashBank.load(path)
    assert list(loaded) == list(bank)
    assert loaded.match(pdq_hash(jpeg(photo("rocket"), 50))[0])[0].entry.name == "rocket"


def test_threatexchange_import_export(tmp_path) -> None:
    h1 = pdq_hash(photo("chelsea"))[0]
    h2 = pdq_hash(photo("camera"))[0]
    text = tmp_path / "te.txt"
    # pdq-photo-hasher output (hash,quality,filename), a bare hash, a comment, a blank line.
    text.write_text(f"# exported\n{h1},100,cat.jpg\n\n{h2.upper()}\n")
    bank = HashBank()
    assert bank.import_threatexchange(text, source="te") == 2
    names = [e.name for e in bank]
    assert names == ["cat.jpg", "line4"]
    out = tmp_path / "out.txt"
    assert bank.export_threatexchange(out) == 2
    assert out.read_text().splitlines() == [f"{h1},100,cat.jpg", f"{h2},,line4"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("abc123", "64 hex digits"),
        ("z" * 64, "not hexadecimal"),
        ("0" * 64 + ",high", "quality must be an integer"),
        ("0" * 64 + ",101", "quality must be an integer"),
        ("0" * 64 + ",1,a,b,c,d", "at most 5 fields"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.bank"
    path.write_text(f"{hb.BANK_HEADER}\n{'f' * 64},90,ok\n{line}\n")
    with pytest.raises(HashBankError, match=rf"line 3: .*{message}"):
        HashBank.load(path)


def test_wrong_hash_length_and_missing_file(tmp_path) -> None:
    bank = HashBank()
    with pytest.raises(HashBankError, match=r"64 hex digits.*got 62"):
        bank.add("short", "ab" * 31)
    with pytest.raises(HashBankError, match="64 hex digits"):
        bank.match("00")
    with pytest.raises(HashBankError, match="no such bank file"):
        HashBank.load(tmp_path / "missing.bank")
    assert bank.match("0" * 64) == [] and bank.nearest("0" * 64) is None


@pytest.mark.parametrize("delta", [8, 4096], ids=["faiss-rebuilds", "numpy-delta"])
def test_concurrent_adds_and_matches(monkeypatch: pytest.MonkeyPatch, delta: int) -> None:
    import threading

    monkeypatch.setattr(hb, "_DELTA_MIN", delta)
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    bank = HashBank()
    errors: list[str] = []

    def writer(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            bank.add(f"e{i}", codes[i].tobytes().hex())

    def reader() -> None:
        for i in range(0, 400, 7):
            found = bank.match(codes[i].tobytes().hex(), threshold=0)
            if found and found[0].entry.name != f"e{i}":
                errors.append(found[0].entry.name)

    threads = [threading.Thread(target=writer, args=(k * 100, k * 100 + 100)) for k in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(bank) == 400
    assert all(bank.match(codes[i].tobytes().hex(), threshold=0)[0].entry.name == f"e{i}"
               for i in range(0, 400, 13))  # fmt: skip
