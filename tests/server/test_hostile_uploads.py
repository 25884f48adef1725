"""Hostile uploads: decode budgets from the header, and timed-out work that really stops."""

from __future__ import annotations

import io
import time

from PIL import Image

from genguard.guard import Guard
from genguard.policy import load_policy
from genguard.server.auditlog import AuditLog
from genguard.store import open_store
from tests.conftest import FakeDetector
from tests.hostile import gif_bomb
from tests.server.conftest import ALLOW_LEVEL, Harness, auth, png


class SlowDetector(FakeDetector):
    """Sleeps per batch, so an animated upload takes seconds: long enough to time out."""

    def detect(self, frames):
        time.sleep(0.15)
        return super().detect(frames)


def animated_gif(frames: int) -> bytes:
    pictures = [Image.new("RGB", (64, 64), (i * 9 % 256, 90, 90)) for i in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:])
    return buffer.getvalue()


def rows_of(harness: Harness, request_id: str) -> list[str]:
    store = open_store(harness.config.store.database())
    try:
        return [r.route for r in AuditLog(store).recent(request_id=request_id)]
    finally:
        store.close()


def test_a_gif_bomb_is_a_fast_4xx_and_normal_uploads_still_pass(harness: Harness) -> None:
    key = harness.key()
    bomb = harness.client.post(
        "/v1/moderate/image", headers=auth(key), content=gif_bomb(8000, 8000, 1000)
    )
    assert bomb.status_code in (413, 422), bomb.text
    assert bomb.json()["error"]["code"] == "too_many_pixels"
    normal = harness.client.post("/v1/moderate/image", headers=auth(key), content=png(ALLOW_LEVEL))
    assert normal.status_code == 200, normal.text


def test_timed_out_moderation_stops_working_and_writes_nothing(harness_factory) -> None:
    detector = SlowDetector()
    guard = Guard(load_policy("standard"), [detector], batch_size=1)
    harness: Harness = harness_factory(
        guards={"standard": guard}, server={"request_timeout_s": 0.3}
    )
    response = harness.client.post(
        "/v1/moderate/image", headers=auth(harness.key()), content=animated_gif(16)
    )
    assert response.status_code == 504, response.text
    time.sleep(0.6)  # the job notices at its next batch and stops
    stopped_at = len(detector.calls)
    time.sleep(0.6)
    assert len(detector.calls) == stopped_at < 16  # no more batches after the 504
    harness.close()
    assert rows_of(harness, response.headers["x-request-id"]) == []


ADMIN = "admin-token-for-hostile-tests-0123456789"


def test_thumbnails_decode_one_frame_and_huge_ids_are_4xx(harness_factory, monkeypatch) -> None:
    from cryptography.fernet import Fernet

    from genguard.server import review

    harness: Harness = harness_factory(
        review={"admin_token": ADMIN},
        store={"store_content": True, "content_key": Fernet.generate_key().decode()},
    )
    upload = harness.client.post(
        "/v1/moderate/image", headers=auth(harness.key()), content=animated_gif(40)
    )
    audit_id = upload.json()["audit_id"]
    seen: list[int] = []
    original = review.load_image

    def counting(data, limits):
        loaded = original(data, limits)
        seen.append(len(loaded.frames))
        return loaded

    monkeypatch.setattr(review, "load_image", counting)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    thumb = harness.client.get(f"/review/items/{audit_id}/thumb", headers=admin)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert seen == [1]  # the first frame only, not 16 of 40
    huge = harness.client.get(f"/review/items/{2**70}/thumb", headers=admin)
    assert huge.status_code == 422, huge.text
