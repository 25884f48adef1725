"""genguard.provenance: invisible watermark, C2PA content credentials, PDQ hash banks.

The Guard hooks are importable from here; they load lazily (PEP 562) so that importing
the CLI does not pull in faiss, OpenCV or the C2PA library until a command needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_EXPORTS = {
    "embed_watermark": "watermark",
    "detect_watermark": "watermark",
    "text_payload": "watermark",
    "WatermarkResult": "watermark",
    "WatermarkError": "watermark",
    "HashBank": "hashbank",
    "BankMatch": "hashbank",
    "BankEntry": "hashbank",
    "HashBankError": "hashbank",
    "pdq_hash": "hashbank",
    "sign_image": "credentials",
    "read_credentials": "credentials",
    "CredentialsReport": "credentials",
    "CredentialsError": "credentials",
}

__all__ = [
    "BankEntry",
    "BankMatch",
    "CredentialsError",
    "CredentialsReport",
    "HashBank",
    "HashBankError",
    "WatermarkError",
    "WatermarkResult",
    "detect_watermark",
    "embed_watermark",
    "pdq_hash",
    "read_credentials",
    "sign_image",
    "text_payload",
]

if TYPE_CHECKING:
    from genguard.provenance.credentials import (
        CredentialsError,
        CredentialsReport,
        read_credentials,
        sign_image,
    )
    from genguard.provenance.hashbank import (
        BankEntry,
        BankMatch,
        HashBank,
        HashBankError,
        pdq_hash,
    )
    from genguard.provenance.watermark import (
        WatermarkError,
        WatermarkResult,
        detect_watermark,
        embed_watermark,
        text_payload,
    )


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genguard.provenance' has no attribute {name!r}")
    return getattr(import_module(f"genguard.provenance.{module}"), name)
