"""Guarded generation: prompt check -> generator -> output check -> censor -> watermark."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from genguard.generators import GenerationSettings
from tests.conftest import solid
from tests.server.conftest import ALLOW_LEVEL, NUDITY_LEVEL, Harness, auth, rgb_of


class SolidGenerator:
    """Solid images whose grey level the prompt picks (``level=200``), counting calls."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls: list[tuple[str, int, GenerationSettings]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.closed = False

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        self.calls.append((prompt, seed, settings))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("CUDA out of memory (simulated)")
        level = ALLOW_LEVEL
        for word in prompt.split():
            if word.startswith("level="):
                level = int(word[6:])
        return Image.fromarray(solid(level, (settings.width, settings.height)))

    def close(self) -> None:
        self.closed = True


def images_of(body: dict) -> list[np.ndarray]:
    return [rgb_of(base64.b64decode(item["image"])) for item in body["images"]]


def test_fake_generator_end_to_end_is_seeded_and_audited(harness: Harness) -> None:
    key = harness.key()
    request = {"prompt": "a lighthouse at dawn", "n": 2, "seed": 41, "width": 64, "height": 96}
    first = harness.client.post("/v1/generate", headers=auth(key), json=request)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["action"] == "allow" and body["prompt"]["decision"]["action"] == "allow"
    assert [item["seed"] for item in body["images"]] == [41, 42]
    assert [item["index"] for item in body["images"]] == [0, 1]
    pictures = images_of(body)
    assert all(p.shape == (96, 64, 3) for p in pictures)
    assert not np.array_equal(pictures[0], pictures[1])  # different seeds, different images
    again = harness.client.post("/v1/generate", headers=auth(key), json=request).json()
    assert all(np.array_equal(a, b) for a, b in zip(pictures, images_of(again), strict=True))
    # One prompt row and one row per image, all under the request id.
    rows = harness.gateway.audit.recent(request_id=body["request_id"])
    assert sorted(r.kind for r in rows) == ["image", "image", "prompt"]
    assert {r.route for r in rows} == {"generate"}
    shas = {r.sha256 for r in rows if r.kind == "image"}
    assert shas == {item["decision"]["sha256"] for item in body["images"]}


def test_blocked_prompt_is_200_with_no_images_and_no_generation(harness_factory) -> None:
    generator = SolidGenerator()
    harness = harness_factory(engine=generator)
    key = harness.key()
    response = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": "zzsexual picture", "n": 2}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["action"] == "block" and body["images"] == []
    assert "sexual" in body["prompt"]["decision"]["reasons"][0]
    held = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": "zzviolence picture"}
    ).json()
    assert held["action"] == "review" and held["images"] == []
    assert generator.calls == []
    queued = harness.gateway.audit.queue()
    assert [r.id for r in queued] == [held["prompt"]["audit_id"]]


def test_output_check_censors_and_hard_rules_combine_with_the_prompt(harness_factory) -> None:
    generator = SolidGenerator()
    harness = harness_factory(engine=generator)
    key = harness.key()
    size = {"width": 200, "height": 160}
    censored = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": f"level={NUDITY_LEVEL} x", **size}
    ).json()
    assert censored["action"] == "censor"
    assert censored["images"][0]["decision"]["hard_rule"] is None
    # The same picture from a prompt that mentions a minor (allowed on its own) is blocked:
    # the prompt's scores are context for the image's hard rules.
    prompt = f"level={NUDITY_LEVEL} zzminor"
    combined = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": prompt, **size}
    ).json()
    assert combined["prompt"]["decision"]["action"] == "allow"
    image = combined["images"][0]
    assert image["action"] == "block" and image["decision"]["hard_rule"] == "sexual_minor"
    assert combined["action"] == "block"
    placeholder = images_of(combined)[0]
    assert placeholder.shape == (160, 200, 3)
    assert not np.array_equal(placeholder, solid(NUDITY_LEVEL, (200, 160)))
    # Settings reached the generator.
    assert generator.calls[-1][2].width == 200 and generator.calls[-1][2].height == 160


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"prompt": "x", "n": 5}, "bad_request"),  # max_n is 4
        ({"prompt": "x", "n": 0}, "invalid_request"),
        ({"prompt": "x", "n": "2"}, "invalid_request"),
        ({"prompt": "x", "width": 100}, "invalid_request"),
        ({"prompt": "x", "width": 2048}, "bad_request"),
        ({"prompt": "x", "steps": 101}, "bad_request"),
        ({"prompt": "x", "seed": -1}, "invalid_request"),
        ({"prompt": "x", "seed": 2**40}, "invalid_request"),
        ({"prompt": "x", "guidance": True}, "invalid_request"),
        ({"prompt": ""}, "empty_prompt"),
    ],
)
def test_generate_rejects_bad_settings(harness: Harness, request_body: dict, code: str) -> None:
    response = harness.client.post("/v1/generate", headers=auth(harness.key()), json=request_body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_generator_failure_is_502_and_slowness_504(harness_factory) -> None:
    failing = harness_factory(engine=SolidGenerator(fail=True))
    response = failing.client.post(
        "/v1/generate", headers=auth(failing.key()), json={"prompt": "a cat"}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "generator_failed"
    slow = harness_factory(engine=SolidGenerator(delay_s=1.5), server={"request_timeout_s": 0.3})
    started = time.perf_counter()
    response = slow.client.post("/v1/generate", headers=auth(slow.key()), json={"prompt": "a cat"})
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    assert time.perf_counter() - started < 1.4


def test_queue_is_bounded_with_503(harness_factory) -> None:
    harness = harness_factory(
        engine=SolidGenerator(delay_s=1.0), server={"workers": 1, "max_queue": 1}
    )
    key = harness.key()
    statuses: list[int] = []
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        response = harness.client.post(
            "/v1/generate", headers=auth(key), json={"prompt": "a cat", "width": 64, "height": 64}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses).count(200) == 2 and statuses.count(503) == 2


def test_watermark_is_embedded_in_shown_images_only(harness_factory, monkeypatch) -> None:
    watermark = pytest.importorskip("genguard.provenance.watermark")
    monkeypatch.setenv("GENGUARD_WATERMARK_KEY", "0x5eed5eed5eed")  # the operator's key
    harness = harness_factory(
        engine=SolidGenerator(), watermark={"enabled": True, "payload": 0x5EED1234}
    )
    key = harness.key()
    size = {"width": 256, "height": 256}
    shown = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": "level=100 a", **size}
    ).json()["images"][0]
    assert shown["watermarked"] is True
    found = watermark.detect_watermark(rgb_of(base64.b64decode(shown["image"])))
    assert found.found and found.payload == 0x5EED1234
    blocked = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": "level=50 a", **size}
    ).json()["images"][0]
    assert blocked["action"] == "block" and blocked["watermarked"] is False
    tiny = harness.client.post(
        "/v1/generate", headers=auth(key), json={"prompt": "a", "width": 64, "height": 64}
    ).json()["images"][0]
    assert tiny["watermarked"] is False and "not watermarked" in tiny["notes"][0]


def test_unwatermarked_by_default(harness_factory) -> None:
    harness = harness_factory(engine=SolidGenerator())
    item = harness.client.post(
        "/v1/generate",
        headers=auth(harness.key()),
        json={"prompt": "a", "width": 256, "height": 256},
    ).json()["images"][0]
    assert item["watermarked"] is False
    assert np.array_equal(images_of({"images": [item]})[0], solid(ALLOW_LEVEL, (256, 256)))


def test_generator_is_closed_on_shutdown(harness_factory) -> None:
    generator = SolidGenerator()
    harness = harness_factory(engine=generator)
    harness.client.post("/v1/generate", headers=auth(harness.key()), json={"prompt": "a"})
    harness.close()
    assert generator.closed


def test_held_outputs_enter_the_queue_with_the_original_stored(harness_factory) -> None:
    from cryptography.fernet import Fernet

    harness = harness_factory(
        engine=SolidGenerator(),
        store={"store_content": True, "content_key": Fernet.generate_key().decode()},
    )
    key = harness.key("studio", "reviewing")
    body = harness.client.post(
        "/v1/generate",
        headers=auth(key),
        json={"prompt": f"level={NUDITY_LEVEL} a", "width": 200, "height": 160},
    ).json()
    item = body["images"][0]
    assert body["action"] == "review" and item["action"] == "review"
    # The client gets a placeholder; the reviewer gets the original (encrypted at rest).
    original = solid(NUDITY_LEVEL, (200, 160))
    assert not np.array_equal(images_of(body)[0], original)
    queued = harness.gateway.audit.queue()
    assert [r.id for r in queued] == [item["audit_id"]]
    media_type, stored = harness.gateway.audit.content(item["audit_id"])
    assert media_type == "image/png" and np.array_equal(rgb_of(stored), original)


def test_uploaded_images_are_published_unmarked(harness_factory) -> None:
    """The mark says "generated here": a moderated upload must not carry it."""
    watermark = pytest.importorskip("genguard.provenance.watermark")
    harness = harness_factory(watermark={"enabled": True, "payload": 0x5EED1234})
    buffer = io.BytesIO()
    Image.fromarray(solid(ALLOW_LEVEL, (256, 256))).save(buffer, format="PNG")
    response = harness.client.post(
        "/v1/moderate/image?publish=true", headers=auth(harness.key()), content=buffer.getvalue()
    )
    assert response.status_code == 200, response.text
    published = rgb_of(base64.b64decode(response.json()["image"]))
    assert not watermark.detect_watermark(published).found
    assert np.array_equal(published, solid(ALLOW_LEVEL, (256, 256)))
