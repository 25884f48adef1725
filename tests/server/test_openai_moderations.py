"""``POST /v1/moderations``: OpenAI's moderation API shape over the key's Guard."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from genguard.server.openai_compat import OPENAI_CATEGORIES
from tests.server.conftest import (
    ALLOW_LEVEL,
    NUDITY_LEVEL,
    VIOLENCE_LEVEL,
    Harness,
    auth,
    fake_guards,
    free_port,
    make_config,
    png,
    wait_for_port,
)


def data_url(level: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png(level)).decode()


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def moderate(harness: Harness, key: str, body: Any) -> Any:
    return harness.client.post("/v1/moderations", headers=auth(key), json=body)


def test_string_input_answers_openais_shape(harness: Harness) -> None:
    key = harness.key()
    response = moderate(harness, key, {"model": "omni-moderation-latest", "input": "a red barn"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "modr-" + response.headers["x-request-id"]
    assert body["model"] == "omni-moderation-latest"
    (result,) = body["results"]
    assert result["flagged"] is False
    assert set(result["categories"]) == set(OPENAI_CATEGORIES)
    assert set(result["category_scores"]) == set(OPENAI_CATEGORIES)
    assert not any(result["categories"].values())
    assert result["category_applied_input_types"]["violence"] == ["text"]
    assert result["category_applied_input_types"]["harassment"] == []
    (decision,) = result["genguard"]["decisions"]
    assert decision["kind"] == "prompt" and decision["action"] == "allow"
    # Written to the audit log like the other routes.
    (record,) = harness.gateway.audit.recent(request_id=response.headers["x-request-id"])
    assert record.id == result["genguard"]["audit_ids"][0]
    assert record.route == "openai_moderations"


def test_list_input_gives_one_result_per_item_in_order(harness: Harness) -> None:
    key = harness.key(rate="10/min")
    response = moderate(harness, key, {"input": ["a red barn", "zzviolence", "a calm lake"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "omni-moderation-latest"  # none given: OpenAI's default echoed
    flagged = [r["flagged"] for r in body["results"]]
    assert flagged == [False, True, False]
    violent = body["results"][1]
    assert violent["categories"]["violence"] is True
    assert violent["category_scores"]["violence"] == pytest.approx(0.9)
    assert violent["genguard"]["action"] != "allow"
    assert response.headers["x-ratelimit-remaining"] == "7"  # one token per item


def test_unknown_model_names_are_echoed(harness: Harness) -> None:
    response = moderate(harness, harness.key(), {"model": "my-own-model", "input": "hello"})
    assert response.json()["model"] == "my-own-model"


def test_flagged_follows_the_policy_and_maps_categories(harness: Harness) -> None:
    key = harness.key()
    sexual = moderate(harness, key, {"input": "zzsexual"}).json()["results"][0]
    assert sexual["categories"]["sexual"] is True
    assert sexual["category_scores"]["sexual"] == pytest.approx(0.9)
    assert sexual["flagged"] is (sexual["genguard"]["action"] != "allow")
    assert sexual["categories"]["sexual/minors"] is False
    minor = moderate(harness, key, {"input": "zzminor"}).json()["results"][0]
    assert minor["flagged"] is False  # a minor alone is fine
    assert minor["categories"]["sexual/minors"] is False
    # Categories genguard has no source for are always false and 0.
    for name in ("harassment", "illicit", "self-harm/intent", "violence/graphic"):
        assert sexual["categories"][name] is False
        assert sexual["category_scores"][name] == 0.0


def test_sexual_minors_comes_from_the_hard_rule(harness: Harness) -> None:
    result = moderate(harness, harness.key(), {"input": "zzsexual zzminor"}).json()["results"][0]
    assert result["flagged"] is True
    assert result["categories"]["sexual/minors"] is True
    assert result["category_scores"]["sexual/minors"] == 1.0
    (decision,) = result["genguard"]["decisions"]
    assert decision["hard_rule"] == "sexual_minor" and decision["action"] == "block"


def test_multimodal_parts_give_one_combined_result(harness: Harness) -> None:
    key = harness.key(rate="10/min")
    parts = [{"type": "text", "text": "a red barn"}, image_part(data_url(VIOLENCE_LEVEL))]
    response = moderate(harness, key, {"input": parts})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert [d["kind"] for d in result["genguard"]["decisions"]] == ["prompt", "image"]
    assert result["genguard"]["action"] == "block" and result["flagged"] is True
    assert result["categories"]["violence"] is True
    assert result["category_applied_input_types"]["violence"] == ["text", "image"]
    assert result["category_applied_input_types"]["self-harm"] == ["text"]
    assert response.headers["x-ratelimit-remaining"] == "8"  # one token per part
    clean = moderate(harness, key, {"input": [image_part(data_url(ALLOW_LEVEL))]}).json()
    assert clean["results"][0]["flagged"] is False
    assert clean["results"][0]["category_applied_input_types"]["violence"] == ["image"]


def test_text_context_reaches_the_image_hard_rule(harness: Harness) -> None:
    """A prompt's minor and an image's nudity block together, as on /v1/generate."""
    parts = [{"type": "text", "text": "zzminor"}, image_part(data_url(NUDITY_LEVEL))]
    result = moderate(harness, harness.key(), {"input": parts}).json()["results"][0]
    assert result["categories"]["sexual/minors"] is True
    assert result["genguard"]["action"] == "block"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://example.com/x.png", "remote_image_url"),
        ("http://10.0.0.1/x.png", "remote_image_url"),
        ("data:image/png;base64,@@not-base64@@", "bad_image_url"),
        ("data:image/png,rawbytes", "bad_image_url"),
        ("data:text/plain;base64,aGVsbG8=", "bad_image_url"),
        ("data:image/png;base64,", "bad_image_url"),
        ("ftp://example.com/x.png", "bad_image_url"),
    ],
)
def test_unusable_image_urls_are_400s(harness: Harness, url: str, code: str) -> None:
    key = harness.key(rate="5/min")
    response = moderate(harness, key, {"input": [image_part(url)]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["x-ratelimit-remaining"] == "5"  # refused before any charge


def test_empty_list_is_a_400(harness: Harness) -> None:
    response = moderate(harness, harness.key(), {"input": []})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_input"


def test_oversized_data_url_is_a_413(harness_factory: Any) -> None:
    harness = harness_factory(server={"max_body_bytes": 4096})
    url = "data:image/png;base64," + base64.b64encode(bytes(8192)).decode()
    response = moderate(harness, harness.key(), {"input": [image_part(url)]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_bad_bodies_are_4xx(harness: Harness) -> None:
    key = harness.key()
    mixed = moderate(harness, key, {"input": ["text", {"type": "text", "text": "x"}]})
    assert mixed.status_code == 422
    unknown = moderate(harness, key, {"input": [{"type": "audio", "audio": "x"}]})
    assert unknown.status_code == 422
    empty = moderate(harness, key, {"input": ""})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_prompt"


def test_auth_is_required(harness: Harness) -> None:
    response = harness.client.post("/v1/moderations", json={"input": "hello"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    wrong = harness.client.post("/v1/moderations", headers=auth("gg_nope"), json={"input": "x"})
    assert wrong.status_code == 401


@pytest.fixture
def live_gateway(tmp_path: Any) -> Iterator[tuple[str, str]]:
    """The app under a real uvicorn on a loopback port: (base URL, API key)."""
    uvicorn = pytest.importorskip("uvicorn")
    from genguard.server.app import create_app

    app = create_app(make_config(tmp_path), guards=fake_guards())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        key = app.state.gateway.keys.create("sdk", "standard", "1000/min")[1]
        yield f"http://127.0.0.1:{port}/v1", key
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.slow  # a live uvicorn on a socket
def test_the_openai_sdk_talks_to_the_gateway(live_gateway: tuple[str, str]) -> None:
    openai = pytest.importorskip("openai", reason="the openai package is not installed")
    base_url, key = live_gateway
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    answer = client.moderations.create(model="omni-moderation-latest", input="zzviolence")
    assert answer.id.startswith("modr-")
    (result,) = answer.results
    assert result.flagged is True
    assert result.categories.violence is True
    assert result.category_scores.violence == pytest.approx(0.9)
    parts = [
        {"type": "text", "text": "a red barn"},
        {"type": "image_url", "image_url": {"url": data_url(ALLOW_LEVEL)}},
    ]
    combined = client.moderations.create(model="omni-moderation-latest", input=parts)
    assert combined.results[0].flagged is False
    assert combined.results[0].category_applied_input_types.violence == ["text", "image"]
    with pytest.raises(openai.BadRequestError):
        client.moderations.create(input=[])


def test_odd_unicode_is_checked_and_lone_surrogates_are_a_one_line_4xx(harness: Harness) -> None:
    key = harness.key()
    odd = moderate(harness, key, {"input": ["zz\u200bviolence \u202e", "\u202e\u200b calm"]})
    assert odd.status_code == 200, odd.text
    assert len(odd.json()["results"]) == 2  # direction marks and zero-widths are just text
    plain = moderate(harness, key, {"input": "zzviolence \u202e\u200b"})
    assert plain.json()["results"][0]["flagged"] is True
    lone = harness.client.post(
        "/v1/moderations",
        headers={**auth(key), "Content-Type": "application/json"},
        content=b'{"input": "zzviolence \\ud800"}',
    )
    assert lone.status_code == 422, lone.text
    assert "\n" not in lone.json()["error"]["message"]
