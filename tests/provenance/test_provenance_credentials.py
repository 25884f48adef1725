"""C2PA credentials: sign with a test CA, read back, detect tampering, refuse bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from genguard.errors import ContentError
from genguard.provenance import credentials as cr

from .conftest import Pki, encode, photo


def test_signed_jpeg_reads_back_as_ai_generated(signed_jpeg: bytes) -> None:
    report = cr.read_credentials(signed_jpeg)
    assert report.has_manifest and report.generator == "my-service"
    assert report.ai_generated is True and report.digital_source_type == cr.AI_SOURCE_TYPE
    assert report.signature_valid and not report.tampered
    assert report.signer == "genguard test signer" and report.issuer == "genguard tests"
    # Without trust anchors the chain is unknown: valid signature, not trusted.
    assert report.state == "Valid" and not report.trusted
    assert any("untrusted" in e for e in report.errors)
    # The pixels are untouched by signing.
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(signed_jpeg))),
        np.asarray(Image.open(io.BytesIO(encode(photo("chelsea"), "JPEG")))),
    )


def test_trust_anchor_makes_it_trusted(signed_jpeg: bytes, pki: Pki) -> None:
    report = cr.read_credentials(signed_jpeg, trust_anchors_pem=pki.ca_pem)
    assert report.state == "Trusted" and report.trusted and report.errors == []


def test_png_and_not_ai(pki: Pki) -> None:
    signed = cr.sign_image(
        encode(photo("coffee"), "PNG"),
        cert_pem=pki.chain_pem,
        key_pem=pki.key_pem,
        generator="camera-app",
        ai_generated=False,
    )
    report = cr.read_credentials(signed)
    assert report.signature_valid and report.generator == "camera-app"
    assert report.ai_generated is False
    assert report.digital_source_type == cr.NON_AI_SOURCE_TYPE


def test_modified_pixels_are_reported_as_tampered(signed_jpeg: bytes) -> None:
    tampered = bytearray(signed_jpeg)
    for offset in (-3000, -2000, -1000):  # inside the JPEG scan data, after the manifest
        tampered[offset] ^= 0x55
    before = np.asarray(Image.open(io.BytesIO(signed_jpeg)).convert("RGB"))
    after = np.asarray(Image.open(io.BytesIO(bytes(tampered))).convert("RGB"))
    assert not np.array_equal(before, after)  # the picture really changed
    report = cr.read_credentials(bytes(tampered))
    assert report.has_manifest and report.tampered and report.state == "Invalid"
    assert any(e.startswith("assertion.dataHash.mismatch") for e in report.errors)


def test_unsigned_image_has_no_manifest() -> None:
    report = cr.read_credentials(encode(photo("rocket"), "JPEG"))
    assert not report.has_manifest and report.state == "NoManifest"
    assert not report.signature_valid and report.ai_generated is None


def test_corrupt_manifest_is_reported_not_raised(signed_jpeg: bytes) -> None:
    corrupt = bytearray(signed_jpeg)
    start = signed_jpeg.find(b"c2pa.signature") + 200
    corrupt[start : start + 16] = bytes(b ^ 0x5A for b in corrupt[start : start + 16])
    report = cr.read_credentials(bytes(corrupt))
    assert report.state == "Corrupt" and report.has_manifest and not report.signature_valid
    assert report.errors and report.errors[0].startswith("corrupt manifest")


def test_certificates_c2pa_refuses_are_explained(pki: Pki) -> None:
    data = encode(photo("astronaut"), "PNG")
    with pytest.raises(cr.CredentialsError, match="self-signed"):
        cr.sign_image(data, cert_pem=pki.self_signed_pem, key_pem=pki.key_pem, generator="x")
    with pytest.raises(cr.CredentialsError, match="extended key usage"):
        cr.sign_image(data, cert_pem=pki.no_eku_pem, key_pem=pki.key_pem, generator="x")
    with pytest.raises(cr.CredentialsError, match="private key"):
        cr.sign_image(data, cert_pem=pki.chain_pem, key_pem=b"not a key", generator="x")
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(cr.CredentialsError, match="does not belong"):
        cr.sign_image(data, cert_pem=pki.chain_pem, key_pem=other_key, generator="x")


def test_unsupported_format_is_refused(pki: Pki) -> None:
    with pytest.raises(cr.CredentialsError, match="BMP"):
        cr.sign_image(
            encode(photo("astronaut"), "BMP"),
            cert_pem=pki.chain_pem,
            key_pem=pki.key_pem,
            generator="x",
        )


def test_non_images_and_formats_without_c2pa() -> None:
    with pytest.raises(ContentError, match="not an image"):
        cr.read_credentials(b"hello, I am a text file")
    report = cr.read_credentials(encode(photo("coffee"), "BMP"))
    assert not report.has_manifest and "BMP" in report.errors[0]
