"""Schemathesis fuzz of the gateway's own OpenAPI spec: no 5xx, and answers match the spec.

Every operation in ``/openapi.json`` is called with generated requests, schema-valid
(positive) and schema-violating (negative), over loopback HTTP with a real API key.
The checks: no 5xx (``not_a_server_error``); statuses, content types, headers and bodies
as documented (errors included: every 4xx is ``{"error": {"code", "message"}}``);
schema-violating requests are refused with a 4xx; missing or wrong keys are refused; and,
our own, every answer carries ``X-Request-ID`` and every Decision in a 200 validates
against ``docs/decision.schema.json`` (the spec itself only says "object" there).

``positive_data_acceptance`` is off on purpose: the spec cannot say that the image bytes
must decode, that a prompt must not be only whitespace, or what this gateway's configured
``max_n``/``max_side`` are (narrower than the schema's absolute bounds), so schema-valid
requests may rightly be 4xx.

Bounded for the suite (``GENGUARD_FUZZ_EXAMPLES``, default 15 per operation and mode);
``GENGUARD_FUZZ_EXAMPLES=300 GENGUARD_FUZZ_RANDOM=1 pytest tests/server/test_openapi_fuzz.py -s``
is the long run (``-s`` shows the status counts per operation).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")

import jsonschema  # noqa: E402  (comes with schemathesis)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import Case, GenerationMode  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.schemas import BaseSchema  # noqa: E402

from genguard.server.app import create_app  # noqa: E402
from tests.server.conftest import fake_guards, make_config  # noqa: E402
from tests.server.test_live import LiveServer  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("GENGUARD_FUZZ_EXAMPLES", "15"))
#: The suite replays the same examples every run (a CI failure reproduces locally);
#: ``GENGUARD_FUZZ_RANDOM=1`` draws new ones, as the long runs should.
FUZZ_RANDOM = os.environ.get("GENGUARD_FUZZ_RANDOM") == "1"
ADMIN = "admin-token-for-fuzzing-0123456789"
#: What a schema-violating request may get: a client error this gateway documents.
REJECTIONS = [400, 401, 413, 415, 422]


def fuzz_config(key: str) -> SchemathesisConfig:
    """Auth for every call, both generation modes, and the checks that fit this API."""
    return SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": f"Bearer {key}"},
            "generation": {
                # Unknown query parameters are ignored, as HTTP APIs commonly do; JSON
                # bodies refuse unknown fields (that part is fuzzed).
                "allow-extra-parameters": False,
                "database": "none",
            },
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"expected-statuses": REJECTIONS},
            },
        }
    )


@pytest.fixture(scope="module")
def gateway_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseSchema]:
    """A live loopback server (fake Guards, fake generator at small sizes) and its spec."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    config = make_config(
        folder,
        generator={"backend": "fake", "max_side": 256, "max_n": 2, "width": 64, "height": 64},
        review={"admin_token": ADMIN},
    )
    app = create_app(config, guards=fake_guards())
    key = app.state.gateway.keys.create("fuzz", "standard", "unlimited")[1]
    # A real server: schemathesis' ASGI transport would run the app's lifespan (start-up
    # and shutdown) around every single call.
    server = LiveServer(app)
    try:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=fuzz_config(key))
    finally:
        server.stop()


def has_request_id(_ctx: object, response: Any, _case: object) -> bool:
    """Every answer, error or not, carries the id to quote in a bug report."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    value = headers.get("x-request-id")
    value = value[0] if isinstance(value, list) else value
    assert value and 8 <= len(value) <= 64, f"missing or odd X-Request-ID: {value!r}"
    return True


DECISION_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "decision.schema.json").read_text()
)


def decisions_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Decision in a 200 body: moderation answers have one, generate one per part."""
    if "decision" in body:
        return [body["decision"]]
    if "results" in body:  # /v1/moderations (OpenAI's shape): Decisions per result
        return [d for result in body["results"] for d in result["genguard"]["decisions"]]
    found = [body["prompt"]["decision"]] if "prompt" in body else []
    return found + [image["decision"] for image in body.get("images", [])]


def decisions_match_their_schema(_ctx: object, response: Any, case: Any) -> bool:
    """The spec only says ``object``; the Decision has its own published JSON Schema."""
    if response.status_code != 200 or not case.path.startswith("/v1/"):
        return True
    decisions = decisions_in(response.json())
    assert decisions, f"a 200 from {case.path} without a decision"
    for decision in decisions:
        jsonschema.Draft202012Validator(DECISION_SCHEMA).validate(decision)
    return True


#: Every operation of the spec; a test below fails when the spec gains one not listed.
OPERATIONS = {
    "GET /healthz": ["positive"],  # no parameters: nothing to violate
    "GET /readyz": ["positive"],
    "GET /metrics": ["positive"],
    "POST /v1/moderate/image": ["positive", "negative"],
    "POST /v1/moderate/prompt": ["positive", "negative"],
    "POST /v1/generate": ["positive", "negative"],
    "POST /v1/moderations": ["positive", "negative"],
}


def test_every_operation_of_the_spec_is_fuzzed(gateway_schema: BaseSchema) -> None:
    labels = {result.ok().label for result in gateway_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize(
    ("label", "mode"), [(label, mode) for label, modes in OPERATIONS.items() for mode in modes]
)
def test_operation_never_5xx_and_matches_the_spec(
    gateway_schema: BaseSchema, label: str, mode: str
) -> None:
    operation = gateway_schema.find_operation_by_label(label)
    calls: list[int] = []

    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not FUZZ_RANDOM,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case) -> None:
        response = case.call_and_validate(
            additional_checks=[has_request_id, decisions_match_their_schema]
        )
        calls.append(response.status_code)

    fuzz()
    assert calls, "no request was sent"
    assert max(calls) < 500
    # Seen with -s; the long run's numbers in docs/gateway.md come from these lines.
    print(f"\nfuzz {label} [{mode}]: {len(calls)} calls, statuses {sorted(Counter(calls).items())}")
