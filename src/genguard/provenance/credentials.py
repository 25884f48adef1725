"""C2PA content credentials: sign generated images and read / verify their manifests.

Signing embeds a C2PA manifest (through ``c2pa-python``) that says the image was
*created* by a trained algorithm (IPTC ``digitalSourceType`` =
``trainedAlgorithmicMedia`` in a ``c2pa.actions`` assertion) and names the generator.
Reading verifies the signature, the hash binding to the pixels and, when trust anchors
are given, the certificate chain, and condenses c2pa's validation report into the few
facts a safety layer acts on: who made it, AI-generated or not, signature valid,
tampered, trusted.

Certificate requirements (enforced by c2pa-rs, checked again here so the error says
what to fix): an end-entity certificate (``CA:FALSE``) issued by a CA, not self-signed,
with key usage ``digitalSignature`` and an extended key usage among emailProtection,
documentSigning (1.3.6.1.5.5.7.3.36) or C2PA claim signing; the PEM passed to ``--cert``
is the leaf first, then its intermediates/root. Supported keys: EC P-256/P-384/P-521
(ES256/384/512), Ed25519, RSA (PS256).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from PIL import Image, UnidentifiedImageError

from genguard.content import LoadLimits, decode_bytes, read_source_bytes
from genguard.errors import ContentError, GenguardError

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_SOURCE_TYPE = IPTC + "trainedAlgorithmicMedia"
#: Declared with ``ai_generated=False``: c2pa requires *some* source type on c2pa.created,
#: and "created by a human using digital tools" is the neutral non-AI one.
NON_AI_SOURCE_TYPE = IPTC + "digitalCreation"
#: Source types that mean "made (at least partly) by generative AI".
AI_SOURCE_TYPES = frozenset(
    {
        IPTC + "trainedAlgorithmicMedia",
        IPTC + "compositeWithTrainedAlgorithmicMedia",
    }
)
#: Manifest title when the caller gives none (the local file name would leak).
DEFAULT_TITLE = "image"
#: Validation codes that mean the content or the manifest changed after signing.
TAMPER_CODES = frozenset(
    {
        "assertion.dataHash.mismatch",
        "assertion.boxesHash.mismatch",
        "assertion.bmffHash.mismatch",
        "assertion.hashedURI.mismatch",
        "assertion.collectionHash.mismatch",
        "claimSignature.mismatch",
    }
)
_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
}
_EKU_OK = {
    x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
    "1.3.6.1.5.5.7.3.36",  # id-kp-documentSigning
    "1.3.6.1.4.1.62558.2.1",  # c2pa-kp-claimSigning
    x509.oid.ExtendedKeyUsageOID.TIME_STAMPING.dotted_string,
    x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,
}


class CredentialsError(GenguardError):
    """Signing or reading content credentials failed; the message says what to fix."""

    code = "bad_credentials"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


@dataclass
class CredentialsReport:
    """What the manifest of an image says, and whether it can be believed.

    ``state`` is c2pa's validation state (``Trusted`` > ``Valid`` > ``Invalid``) or
    ``NoManifest`` / ``Corrupt``. ``signature_valid`` only covers the cryptography;
    ``trusted`` also needs the signer's chain to end at a trust anchor you passed.
    ``ai_generated`` is true when *any* action of the active manifest declares a
    generative-AI source type (created or edited); ``ai_edited`` says an action other
    than ``c2pa.created`` (e.g. an AI ``c2pa.edited``) did. ``digital_source_type`` is the
    ``c2pa.created`` action's, else the first AI one.
    """

    has_manifest: bool
    state: str
    generator: str | None = None
    claim_generator: str | None = None
    ai_generated: bool | None = None
    ai_edited: bool | None = None
    digital_source_type: str | None = None
    signature_valid: bool = False
    trusted: bool = False
    tampered: bool = False
    signer: str | None = None
    issuer: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Signing
# ---------------------------------------------------------------------------------------


def _signing_alg(key_pem: bytes) -> c2pa.C2paSigningAlg:
    """Pick the C2PA algorithm from the private key type (no way to get it wrong)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(
            f"cannot read the private key (unencrypted PEM expected): {exc}", code="bad_key"
        ) from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {
            "secp256r1": c2pa.C2paSigningAlg.ES256,
            "secp384r1": c2pa.C2paSigningAlg.ES384,
            "secp521r1": c2pa.C2paSigningAlg.ES512,
        }
        if key.curve.name not in by_curve:
            raise CredentialsError(f"unsupported EC curve {key.curve.name}", code="bad_key")
        return by_curve[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return c2pa.C2paSigningAlg.ED25519
    if isinstance(key, rsa.RSAPrivateKey):
        return c2pa.C2paSigningAlg.PS256
    raise CredentialsError(f"unsupported key type {type(key).__name__}", code="bad_key")


def check_signing_certificate(cert_pem: bytes) -> None:
    """Raise CredentialsError naming the first C2PA requirement the leaf certificate misses."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CredentialsError(f"cannot read the certificate PEM: {exc}", code="bad_cert") from exc
    leaf = chain[0]
    problems = []
    if leaf.issuer == leaf.subject:
        problems.append("it is self-signed (C2PA needs a certificate issued by a CA)")
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("it is a CA certificate (needs CA:FALSE)")
    except x509.ExtensionNotFound:
        pass
    try:
        if not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            problems.append("key usage lacks digitalSignature")
    except x509.ExtensionNotFound:
        problems.append("it has no key usage extension (needs digitalSignature)")
    try:
        ekus = {
            o.dotted_string
            for o in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        }
        if not ekus & _EKU_OK:
            problems.append("extended key usage lacks emailProtection/documentSigning/c2pa")
    except x509.ExtensionNotFound:
        problems.append("it has no extended key usage (needs e.g. emailProtection)")
    if problems:
        raise CredentialsError(
            "the signing certificate cannot sign C2PA manifests: " + "; ".join(problems),
            code="bad_cert",
        )


def _check_key_matches(cert_pem: bytes, key_pem: bytes) -> None:
    """The private key must belong to the leaf certificate, else every signature is void."""
    leaf = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        raise CredentialsError(
            "the private key does not belong to the first certificate of --cert "
            "(the chain must start with the signing certificate)",
            code="bad_key",
        )


def build_manifest(
    generator: str, title: str | None = None, ai_generated: bool = True
) -> dict[str, Any]:
    """Manifest definition: a ``c2pa.created`` action by ``generator`` (AI source type)."""
    action: dict[str, Any] = {
        "action": "c2pa.created",
        "softwareAgent": {"name": generator},
        "digitalSourceType": AI_SOURCE_TYPE if ai_generated else NON_AI_SOURCE_TYPE,
    }
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": "genguard", "version": _genguard_version()}],
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    if title:
        manifest["title"] = title
    return manifest


def _genguard_version() -> str:
    try:
        from importlib.metadata import version

        return version("genguard")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "0"


def sign_image(
    source: str | os.PathLike[str] | bytes,
    *,
    cert_pem: bytes,
    key_pem: bytes,
    generator: str,
    ai_generated: bool = True,
    tsa_url: str | None = None,
    title: str | None = None,
) -> bytes:
    """Return the image bytes of ``source`` with an embedded, signed C2PA manifest.

    The image is validated first (genguard's safe loader) so that hostile files fail with
    a specific ContentError before they reach the native C2PA library. The manifest
    title is ``title`` if given, else ``DEFAULT_TITLE`` -- never the source's file name.
    """
    data, _ = read_source_bytes(source, LoadLimits())
    loaded = decode_bytes(data)
    mime = _MIME.get(loaded.source_format or "")
    if mime is None:
        raise CredentialsError(
            f"cannot embed C2PA credentials in {loaded.source_format} images; "
            f"use one of {', '.join(sorted(_MIME))}",
            code="unsupported_format",
        )
    if not generator.strip():
        raise CredentialsError("generator name must not be empty", code="bad_manifest")
    check_signing_certificate(cert_pem)
    alg = _signing_alg(key_pem)
    _check_key_matches(cert_pem, key_pem)
    # Never the local file name (it can name people, projects, directories): a neutral
    # title unless the caller chose one.
    manifest = build_manifest(generator, title or DEFAULT_TITLE, ai_generated)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, cert_pem, key_pem, tsa_url))
        with signer, c2pa.Builder(manifest) as builder:
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise CredentialsError(f"C2PA signing failed: {exc}", code="sign_failed") from exc
    return out.getvalue()


def sign_file(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    generator: str,
    ai_generated: bool = True,
    tsa_url: str | None = None,
    title: str | None = None,
) -> None:
    """Sign ``source`` into ``dest`` with the PEM certificate chain and key files.

    The manifest title is ``title`` (opt-in) or the neutral ``DEFAULT_TITLE``."""
    signed = sign_image(
        source,
        cert_pem=_read_pem(cert_path, "certificate"),
        key_pem=_read_pem(key_path, "private key"),
        generator=generator,
        ai_generated=ai_generated,
        tsa_url=tsa_url,
        title=title,
    )
    Path(dest).write_bytes(signed)


def _read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read the {what} file {path}: {exc.strerror or exc}"
        ) from exc


# ---------------------------------------------------------------------------------------
# Reading and verifying
# ---------------------------------------------------------------------------------------


def read_credentials(
    source: str | os.PathLike[str] | bytes, *, trust_anchors_pem: bytes | None = None
) -> CredentialsReport:
    """Read and verify the C2PA manifest of an image.

    Never raises for a missing or broken manifest (those are findings, reported as
    ``NoManifest`` / ``Corrupt``); raises ContentError only when the file itself cannot
    be read. Pass ``trust_anchors_pem`` (your CA certificates) to decide ``trusted``;
    anchors that are not PEM certificates raise CredentialsError (``bad_trust_anchors``)
    before the image is read.
    """
    if trust_anchors_pem is not None:
        check_trust_anchors(trust_anchors_pem)
    data, _ = read_source_bytes(source, LoadLimits())
    mime = _sniff_mime(data)
    if mime is None:
        fmt = _identify(data)
        mime = _MIME.get(fmt)
        if mime is None:
            return CredentialsReport(
                has_manifest=False,
                state="NoManifest",
                errors=[f"{fmt} images cannot carry C2PA manifests"],
            )
    try:
        if trust_anchors_pem:
            context = c2pa.Context.from_dict(
                {"trust": {"trust_anchors": trust_anchors_pem.decode()}}
            )
            reader = c2pa.Reader(mime, io.BytesIO(data), None, context)
        else:
            reader = c2pa.Reader(mime, io.BytesIO(data))
        with reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        if type(exc).__name__.endswith("ManifestNotFound"):
            return CredentialsReport(has_manifest=False, state="NoManifest")
        if not _has_manifest_store(data):
            # A truncated or bare file that c2pa cannot parse, but nothing in it looks
            # like a manifest store: there are no credentials to be tampered with.
            return CredentialsReport(
                has_manifest=False,
                state="NoManifest",
                errors=[f"no C2PA manifest found (file could not be parsed: {exc})"],
            )
        return CredentialsReport(
            has_manifest=True, state="Corrupt", tampered=True, errors=[f"corrupt manifest: {exc}"]
        )
    return summarise_store(store)


def _has_manifest_store(data: bytes) -> bool:
    """Whether the bytes hold (part of) a C2PA manifest store: a JUMBF superbox
    (``jumb``) with a ``c2pa`` description label, wherever the container put it."""
    return b"jumb" in data and b"c2pa" in data


def check_trust_anchors(pem: bytes, name: str | os.PathLike[str] | None = None) -> None:
    """Raise CredentialsError unless ``pem`` is a bundle of PEM X.509 certificates
    (``name``, the file it came from, goes into the message)."""
    where = f"trust anchors file {name}" if name is not None else "trust anchors"
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CredentialsError(
            f"{where} is not a PEM certificate bundle "
            "(expected -----BEGIN CERTIFICATE----- blocks of CA certificates)",
            code="bad_trust_anchors",
        ) from exc


def _identify(data: bytes) -> str:
    """Image format from the header (Pillow), or ContentError for non-images."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return str(img.format)
    except (UnidentifiedImageError, OSError) as exc:
        raise ContentError(
            "not an image (unrecognised format); check the file is not mislabelled",
            code="not_an_image",
        ) from exc


def _sniff_mime(data: bytes) -> str | None:
    """MIME type from magic bytes (None lets c2pa detect it)."""
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"GIF":
        return "image/gif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return None


def summarise_store(store: dict[str, Any]) -> CredentialsReport:
    """Condense a c2pa manifest store (Reader.json) into a CredentialsReport."""
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = [f for f in results.get("failure", []) if isinstance(f, dict)]
    successes = {s.get("code") for s in results.get("success", []) if isinstance(s, dict)}
    fail_codes = {f.get("code", "") for f in failures}
    action = _created_action(active)
    source_type = action.get("digitalSourceType") if action else None
    ai_types = _ai_source_types(active)
    ai_edited = any(t != "c2pa.created" for t, _ in ai_types)
    if source_type is None and ai_types:
        source_type = ai_types[0][1]
    agent = action.get("softwareAgent") if action else None
    generator = agent.get("name") if isinstance(agent, dict) else agent
    info = next(iter(active.get("claim_generator_info", [])), None)
    claim_gen = info.get("name") if isinstance(info, dict) else None
    sig = active.get("signature_info", {})
    state = store.get("validation_state") or ("Invalid" if failures else "Valid")
    return CredentialsReport(
        has_manifest=bool(active),
        state=state,
        generator=generator or claim_gen,
        claim_generator=claim_gen,
        ai_generated=bool(ai_types),
        ai_edited=ai_edited,
        digital_source_type=source_type,
        # A valid signature over a manifest whose hard binding fails (a manifest moved
        # onto other content, edited pixels) does not vouch for *this* image.
        signature_valid="claimSignature.validated" in successes
        and not any(c.startswith("claimSignature") for c in fail_codes)
        and not fail_codes & TAMPER_CODES,
        trusted=state == "Trusted",
        tampered=bool(fail_codes & TAMPER_CODES),
        signer=sig.get("common_name"),
        issuer=sig.get("issuer"),
        errors=[f"{f.get('code')}: {f.get('explanation', '')}".strip() for f in failures],
    )


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every action of the manifest's ``c2pa.actions`` / ``c2pa.actions.v2`` assertions."""
    found: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions", []):
        if not isinstance(assertion, dict):
            continue
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        data = assertion.get("data")
        actions = data.get("actions", []) if isinstance(data, dict) else []
        found.extend(a for a in actions if isinstance(a, dict))
    return found


def _created_action(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The first ``c2pa.created`` action of the manifest's actions assertion(s)."""
    for action in _actions(manifest):
        if action.get("action") == "c2pa.created":
            return action
    return None


def _ai_source_types(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """``(action, digitalSourceType)`` of every action that declares generative AI.

    Any action counts, not only ``c2pa.created``: an AI edit (``c2pa.edited`` with
    ``trainedAlgorithmicMedia``, e.g. inpainting) makes the image AI-generated too.
    """
    return [
        (str(a.get("action", "")), str(a["digitalSourceType"]))
        for a in _actions(manifest)
        if a.get("digitalSourceType") in AI_SOURCE_TYPES
    ]
