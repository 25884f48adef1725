"""CLI commands of genguard.provenance (registered on the main app by genguard.cli).

``genguard watermark embed|detect|payload``, ``genguard credentials sign|read`` and
``genguard hashbank add|match|hash|import|export``. Every command prints JSON on stdout
so scripts can consume it; user errors raise GenguardError (one line, exit code 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from genguard.content import LoadedImage, load_image, save_like
from genguard.errors import ConfigError

if TYPE_CHECKING:
    from genguard.provenance.hashbank import HashBank

watermark_app = typer.Typer(
    help=(
        "Invisible keyed watermark (32-bit payload) bound to the image it is embedded in. "
        "Embedding needs an operator key: --key, else $GENGUARD_WATERMARK_KEY, else a random "
        "per-install key created on first use in <data dir>/watermark.key (mode 0600; the "
        "data dir is the folder of $GENGUARD_STORE, default ./genguard-data). Detection "
        "needs the same key; back the key file up."
    ),
    no_args_is_help=True,
)
credentials_app = typer.Typer(
    help="C2PA content credentials: sign and verify.", no_args_is_help=True
)
hashbank_app = typer.Typer(help="PDQ hash banks of known images.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this subsystem's commands to the main `genguard` app."""
    app.add_typer(watermark_app, name="watermark")
    app.add_typer(credentials_app, name="credentials")
    app.add_typer(hashbank_app, name="hashbank")


def _echo(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2))


def _parse_int(value: str, what: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise ConfigError(f"{what} must be an integer (decimal or 0x-hex), got {value!r}") from None


KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="Secret watermark key (integer or 0x-hex). Default: $GENGUARD_WATERMARK_KEY, "
        "else the per-install key in <data dir>/watermark.key (created 0600 on first use).",
    ),
]


def _watermark_key(key: str | None) -> int:
    """The key from --key, else the operator key (environment or per-install file)."""
    from genguard.provenance import watermark as wm

    return wm.parse_key(key) if key is not None else wm.operator_key()


# ---------------------------------------------------------------------------------------
# watermark
# ---------------------------------------------------------------------------------------


@watermark_app.command("embed")
def watermark_embed(
    src: Annotated[Path, typer.Argument(help="Image to mark.")],
    dest: Annotated[Path, typer.Argument(help="Where to write the marked image.")],
    payload: Annotated[str | None, typer.Option(help="32-bit payload, e.g. 0x1234abcd.")] = None,
    text: Annotated[
        str | None, typer.Option(help="Label; payload = first 4 bytes of SHA-256(label).")
    ] = None,
    key: KeyOpt = None,
    strength: Annotated[float, typer.Option(help="RMS luminance change in levels.")] = 2.3,
) -> None:
    """Embed a 32-bit payload (``--payload`` or ``--text``) into an image."""
    from genguard.provenance import watermark as wm

    if (payload is None) == (text is None):
        raise ConfigError("give exactly one of --payload or --text")
    value = wm.text_payload(text) if text is not None else _parse_int(payload or "", "--payload")
    secret = _watermark_key(key)
    loaded = load_image(src)
    _refuse_lossy_embedding(loaded, src)
    marked = wm.embed_watermark(loaded.rgb, value, key=secret, strength=strength)
    save_like(marked, dest, loaded.source_format)
    check = wm.detect_watermark(load_image(dest).rgb, key=secret, search_scale=False)
    if not (check.found and check.payload == value):
        dest.unlink(missing_ok=True)
        raise ConfigError(
            f"the mark in {dest} could not be read back at --strength {strength:g} "
            f"(confidence {check.confidence:.2f}); nothing written: raise --strength"
        )
    mse = float(np.mean((marked.astype(np.float64) - loaded.rgb) ** 2))
    psnr = 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
    _echo(
        {
            "out": str(dest),
            "payload": f"0x{value:08x}",
            "psnr_db": round(psnr, 2),
            "verified": True,
            "confidence": round(check.confidence, 3),
        }
    )


#: Source modes whose pixels an 8-bit RGB mark would change beyond the mark itself.
_LOSSY_MODES = {
    "RGBA": "its transparency would be flattened",
    "LA": "its transparency would be flattened",
    "PA": "its transparency would be flattened",
    "RGBa": "its transparency would be flattened",
    "I;16": "its 16-bit depth would be reduced to 8 bits",
    "I;16B": "its 16-bit depth would be reduced to 8 bits",
    "I;16L": "its 16-bit depth would be reduced to 8 bits",
    "I": "its 32-bit depth would be reduced to 8 bits",
    "F": "its floating-point pixels would be reduced to 8 bits",
}


def _refuse_lossy_embedding(loaded: LoadedImage, src: Path) -> None:
    """Refuse images that marking would silently change in other ways (say which)."""
    reason = None
    if loaded.n_frames_total > 1:
        reason = f"it is animated ({loaded.n_frames_total} frames): only one frame would be kept"
    elif loaded.source_mode in _LOSSY_MODES:
        reason = _LOSSY_MODES[loaded.source_mode]
    if reason:
        raise ConfigError(
            f"cannot watermark {src}: {reason}; convert it to an 8-bit opaque still first"
        )


@watermark_app.command("detect")
def watermark_detect(
    image: Annotated[Path, typer.Argument(help="Image to examine.")],
    key: KeyOpt = None,
    text: Annotated[
        str | None, typer.Option(help="Also report whether the payload is this label's.")
    ] = None,
    scale_search: Annotated[
        bool,
        typer.Option(
            "--scale-search/--no-scale-search",
            help="Also undo rotation, rescaling, aspect change and mirroring (slower).",
        ),
    ] = True,
) -> None:
    """Print ``{"found", "payload", "confidence", ...}`` as JSON."""
    from genguard.provenance import watermark as wm

    result = wm.detect_watermark(
        load_image(image).rgb, key=_watermark_key(key), search_scale=scale_search
    )
    out = result.to_dict()
    if text is not None:
        out["matches_text"] = result.found and result.payload == wm.text_payload(text)
    _echo(out)


@watermark_app.command("payload")
def watermark_payload(
    text: Annotated[str, typer.Option(help="Label to turn into a 32-bit payload.")],
) -> None:
    """Print the payload that ``embed --text`` would use for a label."""
    from genguard.provenance import watermark as wm

    _echo({"text": text, "payload": f"0x{wm.text_payload(text):08x}"})


# ---------------------------------------------------------------------------------------
# credentials
# ---------------------------------------------------------------------------------------


@credentials_app.command("sign")
def credentials_sign(
    src: Annotated[Path, typer.Argument(help="Image to sign (JPEG, PNG, WebP, ...).")],
    dest: Annotated[Path, typer.Argument(help="Where to write the signed image.")],
    cert: Annotated[Path, typer.Option(help="PEM certificate chain, leaf first.")],
    key: Annotated[Path, typer.Option(help="PEM private key of the leaf (unencrypted).")],
    generator: Annotated[str, typer.Option(help="Name of the generating service/model.")],
    ai: Annotated[
        bool, typer.Option("--ai/--not-ai", help="Declare trainedAlgorithmicMedia.")
    ] = True,
    tsa_url: Annotated[str | None, typer.Option(help="RFC 3161 timestamp authority.")] = None,
    title: Annotated[
        str | None,
        typer.Option(help='Manifest title (default "image"; the file name is never used).'),
    ] = None,
) -> None:
    """Embed a signed C2PA manifest declaring the image AI-generated by GENERATOR."""
    from genguard.provenance import credentials

    credentials.sign_file(
        src, dest, cert_path=cert, key_path=key, generator=generator, ai_generated=ai,
        tsa_url=tsa_url, title=title,
    )  # fmt: skip
    _echo({"out": str(dest), "generator": generator, "ai_generated": ai})


@credentials_app.command("read")
def credentials_read(
    image: Annotated[Path, typer.Argument(help="Image to verify.")],
    trust_anchors: Annotated[
        Path | None, typer.Option(help="PEM file of CA certificates you trust.")
    ] = None,
) -> None:
    """Print generator, AI-generated, signature validity, tampering and errors as JSON."""
    from genguard.provenance import credentials

    anchors = None
    if trust_anchors is not None:
        try:
            anchors = trust_anchors.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read trust anchors {trust_anchors}: {exc}") from exc
        credentials.check_trust_anchors(anchors, trust_anchors)
    _echo(credentials.read_credentials(image, trust_anchors_pem=anchors).to_dict())


# ---------------------------------------------------------------------------------------
# hashbank
# ---------------------------------------------------------------------------------------


def _load_or_new(bank_path: Path) -> HashBank:
    """The bank at ``bank_path``, or a new empty one when the file does not exist yet."""
    from genguard.provenance.hashbank import HashBank

    return HashBank.load(bank_path) if bank_path.exists() else HashBank()


@hashbank_app.command("add")
def hashbank_add(
    bank: Annotated[Path, typer.Argument(help="Bank file (created if missing).")],
    images: Annotated[list[Path], typer.Argument(help="Images to add.")],
    source: Annotated[str | None, typer.Option(help="Where these images came from.")] = None,
) -> None:
    """Hash IMAGES with PDQ and add them to BANK (named after the file).

    The hash is of the stored pixels (as ThreatExchange tools compute it); ``match``
    also looks up the upright hash of EXIF-rotated photos.
    """
    from genguard.provenance.hashbank import MIN_QUALITY, hash_image_file

    store = _load_or_new(bank)
    added = []
    for path in images:
        hashes = hash_image_file(path)
        hex_hash, quality = hashes.stored, hashes.quality
        entry = store.add(path.name, hex_hash, {"quality": quality, "source": source or str(path)})
        row = {"name": entry.name, "hash": entry.hash, "quality": quality}
        if quality < MIN_QUALITY:
            row["warning"] = f"quality {quality} < {MIN_QUALITY}: hash unreliable (flat image?)"
        added.append(row)
    store.save(bank)
    _echo({"bank": str(bank), "entries": len(store), "added": added})


@hashbank_app.command("match")
def hashbank_match(
    bank: Annotated[Path, typer.Argument(help="Bank file.")],
    image: Annotated[Path, typer.Argument(help="Image to look up.")],
    threshold: Annotated[int, typer.Option(help="Max Hamming distance for a match.")] = 31,
    limit: Annotated[int, typer.Option(help="Max matches listed.", min=0)] = 10,
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Also match the 7 rotations and mirror images.")
    ] = False,
) -> None:
    """Print the nearest entry, its Hamming distance and whether it is a match.

    Both the stored-pixel hash and, for EXIF-rotated photos, the upright one are looked
    up; ``--dihedral`` adds every rotation and flip of the image.
    """
    from genguard.provenance.hashbank import (
        BankMatch,
        HashBank,
        HashBankError,
        dihedral_hashes,
        hash_image_file,
    )

    if not bank.exists():
        raise HashBankError(f"no such bank file: {bank}")
    store = HashBank.load(bank)
    hashes = hash_image_file(image)
    hex_hash, quality = hashes.stored, hashes.quality
    queries = hashes.queries()
    if dihedral:
        queries += [h for h in dihedral_hashes(load_image(image).rgb) if h not in queries]
    nearest = min(
        (m for m in (store.nearest(q) for q in queries) if m is not None),
        key=lambda m: m.distance,
        default=None,
    )
    found: dict[int, BankMatch] = {}
    for query in queries:
        for item in store.match(query, threshold=threshold):
            key = id(item.entry)
            if key not in found or item.distance < found[key].distance:
                found[key] = item
    matches = sorted(found.values(), key=lambda m: m.distance)[:limit]
    _echo(
        {
            "hash": hex_hash,
            "quality": quality,
            # Whether anything is within the threshold, however few matches are listed.
            "match": nearest is not None and nearest.distance <= threshold,
            "threshold": threshold,
            "nearest": nearest.to_dict() if nearest else None,
            "matches": [m.to_dict() for m in matches],
        }
    )


@hashbank_app.command("hash")
def hashbank_hash(images: Annotated[list[Path], typer.Argument(help="Images to hash.")]) -> None:
    """Print the PDQ hash and quality of each image.

    ``hash`` is of the stored pixels (interchangeable with ThreatExchange and pdqhash);
    ``hash_oriented`` is added for EXIF-rotated photos (the image as viewers show it).
    """
    from genguard.provenance.hashbank import hash_image_file

    rows = []
    for path in images:
        hashes = hash_image_file(path)
        row: dict[str, object] = {"file": str(path), "hash": hashes.stored}
        if hashes.oriented is not None:
            row["hash_oriented"] = hashes.oriented
        row["quality"] = hashes.quality
        rows.append(row)
    _echo(rows)


@hashbank_app.command("import")
def hashbank_import(
    bank: Annotated[Path, typer.Argument(help="Bank file (created if missing).")],
    hash_file: Annotated[Path, typer.Argument(help="ThreatExchange plain-text hash list.")],
) -> None:
    """Add every hash of a ThreatExchange / pdq-photo-hasher text file to BANK."""
    store = _load_or_new(bank)
    count = store.import_threatexchange(hash_file)
    store.save(bank)
    _echo({"bank": str(bank), "imported": count, "entries": len(store)})


@hashbank_app.command("export")
def hashbank_export(
    bank: Annotated[Path, typer.Argument(help="Bank file.")],
    hash_file: Annotated[Path, typer.Argument(help="Output text file (hash,quality,name).")],
) -> None:
    """Write BANK as a ThreatExchange plain-text hash list."""
    from genguard.provenance.hashbank import HashBank

    count = HashBank.load(bank).export_threatexchange(hash_file)
    _echo({"file": str(hash_file), "exported": count})
