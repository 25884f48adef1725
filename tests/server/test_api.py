"""The gateway's moderation API through FastAPI's TestClient: verdicts, errors, metrics."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest

from tests.server.conftest import (
    ALLOW_LEVEL,
    NUDITY_LEVEL,
    VIOLENCE_LEVEL,
    Harness,
    auth,
    png,
    rgb_of,
)


def test_image_verdicts_follow_the_keys_policy(harness: Harness) -> None:
    standard, reviewing = harness.key("a", "standard"), harness.key("b", "reviewing")
    cases = [
        (standard, ALLOW_LEVEL, "allow"),
        (standard, NUDITY_LEVEL, "censor"),
        (standard, VIOLENCE_LEVEL, "block"),
        (reviewing, NUDITY_LEVEL, "review"),
    ]
    for key, level, action in cases:
        response = harness.client.post(
            "/v1/moderate/image",
            headers=auth(key),
            files={"image": ("x.png", png(level), "image/png")},
        )
        assert response.status_code == 200, response.text
        decision = response.json()["decision"]
        assert decision["action"] == action, (level, decision)
        assert decision["schema"] == "genguard.decision/1"
    assert decision["policy_id"].startswith("reviewing@")


def test_raw_body_upload_and_publishable_pixels(harness: Harness) -> None:
    key = harness.key()
    data = png(NUDITY_LEVEL)
    response = harness.client.post(
        "/v1/moderate/image?publish=true",
        headers={**auth(key), "Content-Type": "image/png"},
        content=data,
    )
    body = response.json()
    assert body["decision"]["action"] == "censor"
    import base64

    published = rgb_of(base64.b64decode(body["image"]))
    assert published.shape == rgb_of(data).shape  # censoring keeps the size
    blocked = harness.client.post(
        "/v1/moderate/image?publish=true", headers=auth(key), content=png(VIOLENCE_LEVEL)
    ).json()
    placeholder = rgb_of(base64.b64decode(blocked["image"]))
    assert blocked["decision"]["action"] == "block"
    assert not np.array_equal(placeholder, rgb_of(png(VIOLENCE_LEVEL)))


def test_prompt_moderation_and_negative_prompt(harness: Harness) -> None:
    key = harness.key()
    ok = harness.client.post(
        "/v1/moderate/prompt", headers=auth(key), json={"prompt": "a lighthouse at dawn"}
    )
    assert ok.status_code == 200 and ok.json()["decision"]["action"] == "allow"
    # curl -d sends application/x-www-form-urlencoded: JSON is accepted regardless.
    held = harness.client.post(
        "/v1/moderate/prompt",
        headers={**auth(key), "Content-Type": "application/x-www-form-urlencoded"},
        content=json.dumps({"prompt": "a zzviolence scene"}),
    )
    assert held.json()["decision"]["action"] == "review"
    # A negative prompt is a safety measure, never a reason to refuse.
    negative = harness.client.post(
        "/v1/moderate/prompt",
        headers=auth(key),
        json={"prompt": "a lighthouse", "negative_prompt": "zzsexual, zzviolence"},
    ).json()["decision"]
    assert negative["action"] == "allow"
    assert any("negative prompt" in note for note in negative["notes"])


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1, 2]", 422, "invalid_request"),
        ('{"prompt": 42}', 422, "invalid_request"),
        ('{"negative_prompt": "x"}', 422, "invalid_request"),
        ('{"prompt": "x", "promt": "typo"}', 422, "invalid_request"),
        ('{"prompt": ""}', 422, "empty_prompt"),
        ('{"prompt": "   "}', 422, "empty_prompt"),
        (json.dumps({"prompt": "a" * 5000}), 422, "prompt_too_long"),
        ("[" * 100_000, 400, "invalid_json"),
        ('{"prompt": "x", "negative_prompt": 1.5}', 422, "invalid_request"),
    ],
)
def test_malformed_prompt_requests_are_4xx(
    harness: Harness, body: str, status: int, code: str
) -> None:
    key = harness.key()
    response = harness.client.post("/v1/moderate/prompt", headers=auth(key), content=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"definitely not an image"}, 415, "not_an_image"),
        ({"content": png(ALLOW_LEVEL)[:60]}, 422, "truncated"),
        ({"content": b""}, 422, "empty_file"),
        ({"files": {"picture": ("x.png", png(ALLOW_LEVEL), "image/png")}}, 422, "missing_image"),
        ({"data": {"image": "text instead of a file"}}, 415, "unsupported_media_type"),
        ({"json": {"image": "aGVsbG8="}}, 415, "unsupported_media_type"),
    ],
)
def test_malformed_image_requests_are_4xx(
    harness: Harness, kwargs: dict, status: int, code: str
) -> None:
    response = harness.client.post("/v1/moderate/image", headers=auth(harness.key()), **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_too_many_pixels_is_413(harness_factory) -> None:
    from genguard.guard import Guard
    from genguard.policy import parse_policy
    from tests.conftest import FakeDetector

    small = parse_policy('extends = "standard"\nname = "small"\n[image]\nmax_pixels = 10000\n')
    harness = harness_factory(guards={"standard": Guard(small, [FakeDetector()])})
    response = harness.client.post(
        "/v1/moderate/image", headers=auth(harness.key()), content=png(ALLOW_LEVEL, (200, 160))
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_pixels"


def test_oversized_body_is_refused_before_reading(harness_factory) -> None:
    harness = harness_factory(server={"max_body_bytes": 4096})
    key = harness.key()
    big = png(ALLOW_LEVEL, (2000, 1000)) + bytes(8192)
    response = harness.client.post("/v1/moderate/image", headers=auth(key), content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"

    # Without a Content-Length (chunked upload) the limit still holds while streaming.
    def chunks():
        for _ in range(10):
            yield bytes(1024)

    streamed = harness.client.post("/v1/moderate/image", headers=auth(key), content=chunks())
    assert streamed.status_code == 413
    # A small request on the same app still works.
    ok = harness.client.post("/v1/moderate/prompt", headers=auth(key), json={"prompt": "a cat"})
    assert ok.status_code == 200


def test_unknown_routes_and_methods_have_json_errors(harness: Harness) -> None:
    missing = harness.client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = harness.client.get("/v1/moderate/image")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_fuzz_random_bytes_and_odd_prompts_never_5xx(harness: Harness) -> None:
    key = harness.key(rate="unlimited")
    rng = random.Random(1234)
    headers = auth(key)
    content_types = ["image/png", "application/octet-stream", "text/plain", "image/jpeg", ""]
    for i in range(40):
        blob = rng.randbytes(rng.randint(1, 3000))
        if i % 4 == 0:  # corrupt a real PNG rather than pure noise
            good = bytearray(png(ALLOW_LEVEL))
            for _ in range(20):
                good[rng.randrange(len(good))] = rng.randrange(256)
            blob = bytes(good)
        ctype = content_types[i % len(content_types)]
        response = harness.client.post(
            "/v1/moderate/image", headers={**headers, "Content-Type": ctype}, content=blob
        )
        assert response.status_code < 500, (i, response.text)
        assert "error" in response.json() or "decision" in response.json()
    odd = [
        "\u202eevil\u202c",
        "Ｆｕｌｌｗｉｄｔｈ",
        "emoji 🧑‍🚀🚀 ok",
        "\x00\x01 control",
        "ｚｚｖｉｏｌｅｎｃｅ",
        "مرحبا بالعالم",
        "\ud800 lone surrogate",  # 422: cannot be stored or encoded
        "a\u0301\u0301\u0301" * 50,
        "\n\t ",
    ]
    for prompt in odd:
        raw = json.dumps({"prompt": prompt})  # ensure_ascii: lone surrogates as escapes
        response = harness.client.post("/v1/moderate/prompt", headers=headers, content=raw)
        assert response.status_code in (200, 422), (prompt, response.text)
    junk = [b"\xff\xfe\x00{", b'{"prompt": "\\ud83d"}', b"null", b'"just a string"', b"1e999"]
    for body in junk:
        response = harness.client.post("/v1/generate", headers=headers, content=body)
        assert 400 <= response.status_code < 500, (body, response.text)


def test_healthz_openapi_and_metrics(harness: Harness) -> None:
    key = harness.key()
    health = harness.client.get("/healthz").json()
    assert health["status"] == "ok" and "reviewing" in health["policies"]
    spec = harness.client.get("/openapi.json").json()
    assert {"/v1/moderate/image", "/v1/moderate/prompt", "/v1/generate"} <= set(spec["paths"])
    prompt_body = spec["paths"]["/v1/moderate/prompt"]["post"]["requestBody"]
    assert "prompt" in prompt_body["content"]["application/json"]["schema"]["properties"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    for level in (ALLOW_LEVEL, NUDITY_LEVEL, NUDITY_LEVEL):
        harness.client.post("/v1/moderate/image", headers=auth(key), content=png(level))
    harness.client.post("/v1/moderate/image", headers=auth(key), content=b"junk")
    text = harness.client.get("/metrics").text
    route = 'route="/v1/moderate/image"'
    assert f'genguard_http_requests_total{{method="POST",{route},status="200"}} 3.0' in text
    assert f'genguard_http_requests_total{{method="POST",{route},status="415"}} 1.0' in text
    assert 'genguard_decisions_total{action="censor",kind="image"} 2.0' in text
    assert 'genguard_decisions_total{action="allow",kind="image"} 1.0' in text
    assert f"genguard_http_request_duration_seconds_count{{{route}}} 4.0" in text
    # Unknown paths share one label instead of one series per scanned URL.
    harness.client.get("/wp-admin/x")
    assert 'route="unmatched"' in harness.client.get("/metrics").text


def test_request_id_is_always_the_gateways_own(harness: Harness, caplog) -> None:
    """The client's id is a correlation field only: two tenants sending the same one get
    distinct gateway ids (in headers, audit rows and logs), so neither can forge the other's."""
    keys = harness.key("tenant-a"), harness.key("tenant-b")
    caplog.set_level(logging.INFO, logger="genguard.server")
    ids = []
    for key in keys:
        response = harness.client.post(
            "/v1/moderate/prompt",
            headers={**auth(key), "X-Request-ID": "abc12345-trace"},
            json={"prompt": "a lighthouse"},
        )
        assert response.headers["x-client-request-id"] == "abc12345-trace"
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32 and request_id == response.json()["request_id"]
        assert [r.key_name for r in harness.gateway.audit.recent(request_id=request_id)] == [
            ("tenant-a", "tenant-b")[len(ids)]
        ]
        ids.append(request_id)
    assert ids[0] != ids[1]
    assert harness.gateway.audit.recent(request_id="abc12345-trace") == []
    logged = [r.__dict__ for r in caplog.records if r.getMessage() == "request"]
    assert [(r["request_id"], r["client_request_id"]) for r in logged] == [
        (ids[0], "abc12345-trace"),
        (ids[1], "abc12345-trace"),
    ]
    # An unsafe value is neither echoed nor logged; the gateway's id is there regardless.
    made = harness.client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    assert len(made.headers["x-request-id"]) == 32
    assert "x-client-request-id" not in made.headers


def test_a_bug_is_a_json_500_without_details(harness: Harness, monkeypatch) -> None:
    def broken(*_args: object) -> None:
        raise KeyError("secret internal detail")

    monkeypatch.setattr(harness.gateway.pipeline, "moderate_prompt", broken)
    response = harness.client.post(
        "/v1/moderate/prompt",
        headers={**auth(harness.key()), "X-Request-ID": "client-trace-1"},
        json={"prompt": "a cat"},
    )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal" and "secret" not in error["message"]
    assert response.headers["x-request-id"] in error["message"]
    assert response.headers["x-client-request-id"] == "client-trace-1"


def test_the_clients_request_id_is_kept_in_the_audit_row(harness: Harness) -> None:
    """An operator handed the id from a client's logs finds the decision (one per tenant
    that used it); an id the gateway would not echo is not stored either."""
    keys = harness.key("tenant-c"), harness.key("tenant-d")
    for key in keys:
        response = harness.client.post(
            "/v1/moderate/prompt",
            headers={**auth(key), "X-Request-ID": "support-ticket-4711"},
            json={"prompt": "a lighthouse"},
        )
        assert response.status_code == 200, response.text
    found = harness.gateway.audit.recent(client_request_id="support-ticket-4711")
    assert sorted(r.key_name for r in found) == ["tenant-c", "tenant-d"]
    assert {r.client_request_id for r in found} == {"support-ticket-4711"}
    assert len({r.request_id for r in found}) == 2
    bad = harness.client.post(
        "/v1/moderate/prompt",
        headers={**auth(keys[0]), "X-Request-ID": "<script>"},
        json={"prompt": "a lighthouse"},
    )
    row = harness.gateway.audit.recent(request_id=bad.headers["x-request-id"])[0]
    assert row.client_request_id is None
