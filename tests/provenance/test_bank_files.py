"""Bank files as people write them: odd names, BOMs, ThreatExchange lines, small limits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from genguard.cli import main
from genguard.provenance.hashbank import HashBank, pdq_hash

HASH = "f" * 32 + "0" * 32


def test_a_newline_in_a_name_or_source_never_splits_an_entry(tmp_path: Path) -> None:
    bank = HashBank()
    bank.add("evil\nname.jpg", HASH, {"source": "scan\r\n2026\x00"})
    bank.save(tmp_path / "b.bank")
    (entry,) = HashBank.load(tmp_path / "b.bank")  # still one readable entry
    assert entry.name == "evil name.jpg" and entry.source == "scan 2026"
    bank.add("next", HASH)
    bank.save(tmp_path / "b.bank")
    assert len(HashBank.load(tmp_path / "b.bank")) == 2


def test_a_bom_and_threatexchange_pdq_lines_are_read(tmp_path: Path) -> None:
    other = "0" * 32 + "f" * 32
    path = tmp_path / "tx.txt"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HASH},90,first\npdq {other}\npdq {HASH} tail\n".encode())
    entries = list(HashBank.load(path))
    assert [e.hash for e in entries] == [HASH, other, HASH]
    assert entries[0].name == "first" and entries[1].name == "line2"


def test_match_with_limit_0_still_says_whether_it_matched(tmp_path: Path, capsys) -> None:
    rgb = np.ascontiguousarray(skimage.data.coffee())
    image = tmp_path / "coffee.png"
    Image.fromarray(rgb).save(image)
    bank = HashBank()
    bank.add("coffee", pdq_hash(rgb)[0])
    bank.save(tmp_path / "b.bank")
    code = main(["hashbank", "match", str(tmp_path / "b.bank"), str(image), "--limit", "0"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["match"] is True and result["matches"] == []
    assert result["nearest"]["distance"] == 0


def rotated_jpeg(path: Path, rgb: np.ndarray, orientation: int) -> None:
    """A JPEG whose stored pixels are ``rgb`` and whose EXIF says how to turn them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, format="JPEG", quality=95, exif=exif)


def test_exif_rotated_photos_hash_their_stored_pixels_and_match_either_way(
    tmp_path: Path, capsys
) -> None:
    import pdqhash

    from genguard.provenance.hashbank import hamming, hash_image_file

    rgb = np.ascontiguousarray(skimage.data.chelsea())
    photo = tmp_path / "rotated.jpg"
    rotated_jpeg(photo, rgb, 6)
    hashes = hash_image_file(photo)
    stored = np.asarray(Image.open(photo).convert("RGB"))
    reference = np.packbits(pdqhash.compute(stored)[0].astype(np.uint8)).tobytes().hex()
    assert hashes.stored == reference  # what ThreatExchange tools compute
    assert hashes.oriented is not None and hamming(hashes.stored, hashes.oriented) > 64
    # A bank built from the upright image (e.g. by another tool from a re-saved copy)
    # still matches the rotated upload, through its oriented hash.
    upright = np.ascontiguousarray(np.rot90(rgb, -1))
    bank = HashBank()
    bank.add("upright", pdq_hash(upright)[0])
    bank.save(tmp_path / "b.bank")
    assert main(["hashbank", "match", str(tmp_path / "b.bank"), str(photo)]) == 0
    assert json.loads(capsys.readouterr().out)["match"] is True
    assert main(["hashbank", "hash", str(photo)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["hash"] == reference and row["hash_oriented"] == hashes.oriented


def test_flipped_copies_match_only_with_dihedral(tmp_path: Path, capsys) -> None:
    rgb = np.ascontiguousarray(skimage.data.coffee())
    flipped = tmp_path / "flipped.png"
    Image.fromarray(np.ascontiguousarray(np.fliplr(rgb))).save(flipped)
    bank = HashBank()
    bank.add("coffee", pdq_hash(rgb)[0])
    bank.save(tmp_path / "b.bank")
    main(["hashbank", "match", str(tmp_path / "b.bank"), str(flipped)])
    assert json.loads(capsys.readouterr().out)["match"] is False
    main(["hashbank", "match", str(tmp_path / "b.bank"), str(flipped), "--dihedral"])
    result = json.loads(capsys.readouterr().out)
    assert result["match"] is True and result["nearest"]["distance"] <= 31


def test_embedding_refuses_what_it_would_silently_change(tmp_path: Path, capsys) -> None:
    still = tmp_path / "still.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.coffee())).save(still)
    alpha = tmp_path / "alpha.png"
    Image.new("RGBA", (400, 300), (200, 100, 50, 128)).save(alpha)
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(400 * 300).reshape(300, 400) % 65536).astype(np.uint16)).save(deep)
    frames = [Image.new("RGB", (300, 300), (i * 40, 90, 90)) for i in range(3)]
    animated = tmp_path / "anim.gif"
    frames[0].save(animated, save_all=True, append_images=frames[1:])
    for path, words in ((alpha, "transparency"), (deep, "16-bit"), (animated, "animated")):
        code = main(["watermark", "embed", str(path), str(tmp_path / "out.png"), "--text", "x"])
        err = capsys.readouterr().err
        assert code == 2 and words in err, (path, err)
        assert not (tmp_path / "out.png").exists()
    # Too weak to be read back: refused, nothing written.
    weak = tmp_path / "weak.jpg"
    code = main(["watermark", "embed", str(still), str(weak), "--text", "x", "--strength", "0.01"])
    assert code == 2 and "raise --strength" in capsys.readouterr().err
    assert not weak.exists()
    assert main(["watermark", "embed", str(still), str(tmp_path / "ok.png"), "--text", "x"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] is True and result["confidence"] > 0.5
