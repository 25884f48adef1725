"""Content-key rotation: the first key encrypts, every listed key decrypts, and content
under a key no longer listed is a clear 409, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from genguard.errors import ConfigError
from genguard.server.auditlog import ContentKeyMissing, ContentVault
from tests.server.conftest import ALLOW_LEVEL, Harness, auth, png

ADMIN = "admin-token-for-rotation-tests-0123456789"


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    under_old = ContentVault(old).encrypt(b"x")
    rotated = ContentVault(f" {new} , {old} ,")  # blanks and a trailing comma are fine
    assert rotated.decrypt(under_old) == b"x"
    under_new = rotated.encrypt(b"y")
    assert ContentVault(new).decrypt(under_new) == b"y"
    with pytest.raises(InvalidToken):
        ContentVault(old).decrypt(under_new)


def test_a_bad_key_in_the_list_is_named_by_position_not_shown() -> None:
    good = Fernet.generate_key().decode()
    with pytest.raises(ConfigError, match="content key 2 is not a Fernet key") as caught:
        ContentVault(f"{good},not-a-key-secret")
    assert "not-a-key-secret" not in str(caught.value) and good not in str(caught.value)
    with pytest.raises(ConfigError, match="no content key"):
        ContentVault(" , ")


def test_thumbnails_survive_key_rotation(harness_factory, tmp_path: Path) -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    database = str(tmp_path / "shared.db")
    admin = {"Authorization": f"Bearer {ADMIN}"}

    def start(content_key: str) -> Harness:
        return harness_factory(
            review={"admin_token": ADMIN},
            store={"url": database, "store_content": True, "content_key": content_key},
        )

    first = start(key_a)
    api_key = first.key("uploader")
    old_item = first.client.post(
        "/v1/moderate/image", headers=auth(api_key), content=png(ALLOW_LEVEL)
    ).json()["audit_id"]
    thumb = f"/review/items/{old_item}/thumb"
    assert first.client.get(thumb, headers=admin).status_code == 200
    first.close()

    # Key A dropped: the old item's content is a clear 409, not a 500.
    only_b = start(key_b)
    refused = only_b.client.get(thumb, headers=admin)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "content_key_missing"
    assert "no longer configured" in error["message"]
    with pytest.raises(ContentKeyMissing):
        only_b.gateway.audit.content(old_item)
    new_item = only_b.client.post(
        "/v1/moderate/image", headers=auth(api_key), content=png(ALLOW_LEVEL)
    ).json()["audit_id"]
    assert only_b.client.get(f"/review/items/{new_item}/thumb", headers=admin).status_code == 200
    only_b.close()

    # "B,A": B encrypts, both decrypt, so old and new items show again.
    both = start(f"{key_b},{key_a}")
    for item in (old_item, new_item):
        response = both.client.get(f"/review/items/{item}/thumb", headers=admin)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
