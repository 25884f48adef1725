"""End-to-end CLI: `genguard watermark|credentials|hashbank ...` through genguard.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from genguard.cli import main
from genguard.provenance.watermark import text_payload

from .conftest import Pki, photo


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else out), err


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name in ("astronaut", "coffee"):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(photo(name)).save(paths[name])
    return paths


def test_watermark_embed_detect(capsys, tmp_path: Path, images: dict[str, Path]) -> None:
    out = tmp_path / "marked.jpg"
    code, data, _ = run(
        capsys, "watermark", "embed", images["astronaut"], out, "--payload", "0x1234abcd"
    )
    assert code == 0 and data["payload"] == "0x1234abcd" and data["psnr_db"] >= 40  # type: ignore[index]
    code, data, _ = run(capsys, "watermark", "detect", out)
    assert code == 0 and data["found"] is True and data["payload"] == "0x1234abcd"  # type: ignore[index]
    assert data["confidence"] > 0.9  # type: ignore[index]
    code, data, _ = run(capsys, "watermark", "detect", images["coffee"])
    assert code == 0 and data["found"] is False and data["payload"] is None  # type: ignore[index]
    code, data, _ = run(capsys, "watermark", "detect", out, "--key", "0x1234", "--no-scale-search")
    assert code == 0 and data["found"] is False  # type: ignore[index]


def test_watermark_text_payload(capsys, tmp_path: Path, images: dict[str, Path]) -> None:
    out = tmp_path / "t.png"
    assert run(capsys, "watermark", "embed", images["coffee"], out, "--text", "svc-01")[0] == 0
    _, data, _ = run(capsys, "watermark", "detect", out, "--text", "svc-01")
    assert data["payload"] == f"0x{text_payload('svc-01'):08x}" and data["matches_text"]  # type: ignore[index]
    _, data, _ = run(capsys, "watermark", "payload", "--text", "svc-01")
    assert data["payload"] == f"0x{text_payload('svc-01'):08x}"  # type: ignore[index]


def test_watermark_errors_exit_2(capsys, tmp_path: Path, images: dict[str, Path]) -> None:
    out = tmp_path / "x.png"
    code, _, err = run(
        capsys, "watermark", "embed", images["coffee"], out, "--payload", "0x1ffffffff"
    )
    assert code == 2 and "32 bits" in err
    code, _, err = run(capsys, "watermark", "embed", images["coffee"], out)
    assert code == 2 and "exactly one" in err
    small = tmp_path / "small.png"
    Image.fromarray(photo("coffee")[:100, :100]).save(small)
    code, _, err = run(capsys, "watermark", "embed", small, out, "--payload", "1")
    assert code == 2 and "at least 256x256" in err
    assert not out.exists()


def test_credentials_sign_read(capsys, tmp_path: Path, images: dict[str, Path], pki: Pki) -> None:
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.write_bytes(pki.chain_pem)
    key.write_bytes(pki.key_pem)
    ca.write_bytes(pki.ca_pem)
    signed = tmp_path / "signed.png"
    code, data, err = run(
        capsys, "credentials", "sign", images["astronaut"], signed,
        "--cert", cert, "--key", key, "--generator", "my-service",
    )  # fmt: skip
    assert code == 0, err
    code, data, _ = run(capsys, "credentials", "read", signed, "--trust-anchors", ca)
    assert data["generator"] == "my-service" and data["ai_generated"] is True  # type: ignore[index]
    assert data["signature_valid"] and data["trusted"] and not data["tampered"]  # type: ignore[index]
    code, data, _ = run(capsys, "credentials", "read", images["coffee"])
    assert code == 0 and data["has_manifest"] is False  # type: ignore[index]


def test_hashbank_add_match(capsys, tmp_path: Path, images: dict[str, Path]) -> None:
    bank = tmp_path / "banned.bank"
    code, data, _ = run(capsys, "hashbank", "add", bank, images["astronaut"], images["coffee"])
    assert code == 0 and data["entries"] == 2  # type: ignore[index]
    upload = tmp_path / "upload.jpg"
    Image.fromarray(photo("coffee")).resize((300, 200)).save(upload, quality=60)
    code, data, _ = run(capsys, "hashbank", "match", bank, upload)
    assert data["match"] is True and data["nearest"]["name"] == "coffee.png"  # type: ignore[index]
    assert data["nearest"]["distance"] <= 31  # type: ignore[index]
    other = tmp_path / "rocket.png"
    Image.fromarray(photo("rocket")).save(other)
    code, data, _ = run(capsys, "hashbank", "match", bank, other)
    assert data["match"] is False and data["nearest"]["distance"] > 31  # type: ignore[index]
    exported = tmp_path / "te.txt"
    assert run(capsys, "hashbank", "export", bank, exported)[0] == 0
    bank2 = tmp_path / "copy.bank"
    code, data, _ = run(capsys, "hashbank", "import", bank2, exported)
    assert data["imported"] == 2  # type: ignore[index]


def test_hashbank_malformed_file_exit_2(capsys, tmp_path: Path, images: dict[str, Path]) -> None:
    bank = tmp_path / "bad.bank"
    bank.write_text("# comment\n" + "a" * 64 + "\nnot-a-hash\n")
    code, _, err = run(capsys, "hashbank", "match", bank, images["coffee"])
    assert code == 2 and "line 3" in err
