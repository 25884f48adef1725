"""Issue 15: C2PA readers that misreported provenance (AI edits, manifest-less files,
bad trust anchors, manifests moved onto other images, file names leaking into titles)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import c2pa
import pytest
from PIL import Image

from genguard.provenance import credentials as cr

from .conftest import Pki, encode, photo


def sign_manifest(pki: Pki, manifest: dict[str, Any], data: bytes) -> bytes:
    """Sign ``data`` (JPEG) with an arbitrary manifest definition."""
    alg = cr._signing_alg(pki.key_pem)
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, pki.chain_pem, pki.key_pem, None))
    with signer, c2pa.Builder(manifest) as builder:
        out = io.BytesIO()
        builder.sign(signer, "image/jpeg", io.BytesIO(data), out)
    return out.getvalue()


def active_manifest(signed: bytes) -> dict[str, Any]:
    with c2pa.Reader("image/jpeg", io.BytesIO(signed)) as reader:
        store = json.loads(reader.json())
    manifest: dict[str, Any] = store["manifests"][store["active_manifest"]]
    return manifest


@pytest.mark.parametrize(
    "source", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"]
)
def test_ai_edit_reads_ai_generated(pki: Pki, source: str) -> None:
    manifest = cr.build_manifest("camera-app", ai_generated=False)
    manifest["assertions"][0]["data"]["actions"].append(
        {
            "action": "c2pa.edited",
            "softwareAgent": {"name": "inpainter"},
            "digitalSourceType": cr.IPTC + source,
        }
    )
    report = cr.read_credentials(sign_manifest(pki, manifest, encode(photo("coffee"), "JPEG")))
    assert report.signature_valid and report.generator == "camera-app"
    assert report.ai_generated is True and report.ai_edited is True
    # The created action's own source type is still the one reported.
    assert report.digital_source_type == cr.NON_AI_SOURCE_TYPE


def test_non_ai_edit_stays_not_ai(pki: Pki) -> None:
    manifest = cr.build_manifest("camera-app", ai_generated=False)
    manifest["assertions"][0]["data"]["actions"].append(
        {"action": "c2pa.color_adjustments", "softwareAgent": {"name": "editor"}}
    )
    report = cr.read_credentials(sign_manifest(pki, manifest, encode(photo("coffee"), "JPEG")))
    assert report.ai_generated is False and report.ai_edited is False


def test_ai_created_is_not_an_edit(signed_jpeg: bytes) -> None:
    report = cr.read_credentials(signed_jpeg)
    assert report.ai_generated is True and report.ai_edited is False


def _files_without_manifest() -> dict[str, bytes]:
    jpeg, png = encode(photo("rocket"), "JPEG"), encode(photo("coffee"), "PNG")
    return {
        "truncated jpeg": jpeg[:200],
        "bare jpeg header": b"\xff\xd8\xff\xe0",
        "jpeg soi only": b"\xff\xd8",
        "plain png": png,
        "truncated png": png[:100],
    }


@pytest.mark.parametrize("name", sorted(_files_without_manifest()))
def test_files_without_manifest_are_not_tampered(name: str) -> None:
    report = cr.read_credentials(_files_without_manifest()[name])
    assert report.state == "NoManifest" and not report.has_manifest
    assert not report.tampered and not report.signature_valid


def test_truncated_signed_file_is_still_a_broken_manifest(signed_jpeg: bytes) -> None:
    cut = signed_jpeg.find(b"c2pa.signature") + 100  # inside the manifest store
    report = cr.read_credentials(signed_jpeg[:cut])
    assert report.has_manifest and report.tampered and not report.signature_valid


@pytest.mark.parametrize("anchors", [b"hello, not a certificate\n", b""])
def test_bad_trust_anchors_are_a_clear_error(signed_jpeg: bytes, anchors: bytes) -> None:
    with pytest.raises(cr.CredentialsError, match="not a PEM certificate") as info:
        cr.read_credentials(signed_jpeg, trust_anchors_pem=anchors)
    assert info.value.code == "bad_trust_anchors"
    # Raised before the image is read: even a non-image path gets the anchors error.
    with pytest.raises(cr.CredentialsError, match="not a PEM certificate"):
        cr.read_credentials(b"not an image", trust_anchors_pem=anchors)


def test_cli_bad_trust_anchors_file_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, signed_jpeg: bytes
) -> None:
    from genguard.cli import main

    image, anchors = tmp_path / "signed.jpg", tmp_path / "anchors.txt"
    image.write_bytes(signed_jpeg)
    anchors.write_text("these are not certificates\n")
    code = main(["credentials", "read", str(image), "--trust-anchors", str(anchors)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(anchors) in lines[0] and "not a PEM certificate" in lines[0]


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of the JPEG header segments before the scan."""
    i, found = 2, []
    while i < len(data) and data[i + 1] != 0xDA:
        assert data[i] == 0xFF
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        found.append((data[i + 1], i, end))
        i = end
    return found


def test_manifest_moved_onto_another_image_is_invalid(signed_jpeg: bytes) -> None:
    store = b"".join(signed_jpeg[s:e] for m, s, e in _jpeg_segments(signed_jpeg) if m == 0xEB)
    assert store  # the C2PA manifest store lives in APP11 (JUMBF) segments
    other = encode(photo("astronaut"), "JPEG")
    moved = other[:2] + store + other[2:]
    report = cr.read_credentials(moved)
    assert report.has_manifest and report.state == "Invalid"
    assert report.tampered and not report.signature_valid
    assert any(e.startswith("assertion.dataHash.mismatch") for e in report.errors)


def test_signature_stays_valid_on_the_original(signed_jpeg: bytes) -> None:
    report = cr.read_credentials(signed_jpeg)
    assert report.signature_valid and not report.tampered


def test_sign_does_not_leak_the_file_name(pki: Pki, tmp_path: Path) -> None:
    source = tmp_path / "alice-private-holiday.jpg"
    source.write_bytes(encode(photo("chelsea"), "JPEG"))
    signed = cr.sign_image(source, cert_pem=pki.chain_pem, key_pem=pki.key_pem, generator="g")
    assert b"alice-private-holiday" not in signed
    assert active_manifest(signed)["title"] == cr.DEFAULT_TITLE == "image"
    titled = cr.sign_image(
        source, cert_pem=pki.chain_pem, key_pem=pki.key_pem, generator="g", title="Sunset"
    )
    assert active_manifest(titled)["title"] == "Sunset"


def test_cli_sign_does_not_leak_the_file_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pki: Pki
) -> None:
    from genguard.cli import main

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pki.chain_pem)
    key.write_bytes(pki.key_pem)
    source = tmp_path / "bob-secret-project.png"
    Image.fromarray(photo("coffee")).save(source)
    common = ["--cert", str(cert), "--key", str(key), "--generator", "svc"]
    out = tmp_path / "out.png"
    assert main(["credentials", "sign", str(source), str(out), *common]) == 0
    assert b"bob-secret-project" not in out.read_bytes()
    titled = tmp_path / "titled.png"
    assert main(["credentials", "sign", str(source), str(titled), *common, "--title", "T"]) == 0
    capsys.readouterr()
    with c2pa.Reader("image/png", io.BytesIO(titled.read_bytes())) as reader:
        store = json.loads(reader.json())
    assert store["manifests"][store["active_manifest"]]["title"] == "T"
