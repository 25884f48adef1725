"""Generator backends: A1111 and ComfyUI against fake peers speaking their HTTP shapes,
and a tiny random-weight diffusers pipeline served through the gateway."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest

from genguard.errors import GeneratorError
from genguard.generators import GenerationSettings, create_generator
from genguard.generators.http import DEFAULT_COMFY_WORKFLOW, fill_workflow
from tests.server.conftest import Harness, auth, rgb_of
from tests.server.peers import Peer, json_reply, seeded_png

SETTINGS = GenerationSettings(steps=4, guidance=6.0, width=64, height=48, negative_prompt="blurry")


@pytest.fixture
def a1111() -> Iterator[Peer]:
    """Fake AUTOMATIC1111 ``--api``: POST /sdapi/v1/txt2img."""
    peer = Peer()

    def txt2img(_url: Any, body: dict) -> tuple[int, str, bytes]:
        if not isinstance(body.get("prompt"), str):
            return json_reply({"detail": [{"msg": "field required"}]}, 422)
        image = seeded_png(body["seed"], body["width"], body["height"])
        info = {"seed": body["seed"], "all_seeds": [body["seed"]], "prompt": body["prompt"]}
        return json_reply(
            {
                "images": [base64.b64encode(image).decode()],
                "parameters": body,
                "info": json.dumps(info),
            }
        )

    peer.routes[("POST", "/sdapi/v1/txt2img")] = txt2img
    yield peer
    peer.close()


@pytest.fixture
def comfyui() -> Iterator[Peer]:
    """Fake ComfyUI: POST /prompt, GET /history/{id} (empty until done), GET /view."""
    peer = Peer()
    jobs: dict[str, dict] = {}
    polls: dict[str, int] = {}

    def queue(_url: Any, body: dict) -> tuple[int, str, bytes]:
        graph = body.get("prompt")
        if not isinstance(graph, dict) or not body.get("client_id"):
            return json_reply({"error": {"type": "invalid_prompt"}, "node_errors": {}}, 400)
        prompt_id = str(uuid.uuid4())
        jobs[prompt_id] = graph
        polls[prompt_id] = 0
        return json_reply({"prompt_id": prompt_id, "number": len(jobs), "node_errors": {}})

    def history(url: Any, _body: Any) -> tuple[int, str, bytes]:
        prompt_id = url.path.rsplit("/", 1)[-1]
        polls[prompt_id] = polls.get(prompt_id, 0) + 1
        if prompt_id not in jobs or polls[prompt_id] < 2:  # still running on first poll
            return json_reply({})
        graph = jobs[prompt_id]
        sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
        latent = next(n for n in graph.values() if n["class_type"] == "EmptyLatentImage")
        name = f"gg_{sampler['inputs']['seed']}_{latent['inputs']['width']}x" + (
            f"{latent['inputs']['height']}.png"
        )
        return json_reply(
            {
                prompt_id: {
                    "prompt": [0, prompt_id, graph, {}, ["9"]],
                    "outputs": {
                        "9": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}
                    },
                    "status": {"status_str": "success", "completed": True, "messages": []},
                }
            }
        )

    def view(url: Any, _body: Any) -> tuple[int, str, bytes]:
        query = parse_qs(url.query)
        if query.get("type") != ["output"]:
            return 400, "text/plain", b"bad type"
        stem = query["filename"][0].removesuffix(".png").split("_")
        width, height = (int(v) for v in stem[2].split("x"))
        return 200, "image/png", seeded_png(int(stem[1]), width, height)

    peer.routes[("POST", "/prompt")] = queue
    peer.routes[("GET", "/history/")] = history
    peer.routes[("GET", "/view")] = view
    yield peer
    peer.close()


def test_a1111_backend_speaks_txt2img(a1111: Peer) -> None:
    gen = create_generator("a1111", "sd15.safetensors", {"url": a1111.url, "sampler": "DDIM"})
    image = gen.generate("a lighthouse", 7, SETTINGS)
    gen.close()
    assert np.array_equal(np.asarray(image), rgb_of(seeded_png(7, 64, 48)))
    method, path, body = a1111.requests[-1]
    assert (method, path) == ("POST", "/sdapi/v1/txt2img")
    assert body["prompt"] == "a lighthouse" and body["negative_prompt"] == "blurry"
    assert (body["seed"], body["steps"], body["cfg_scale"]) == (7, 4, 6.0)
    assert body["sampler_name"] == "DDIM" and body["batch_size"] == 1
    assert body["override_settings"] == {"sd_model_checkpoint": "sd15.safetensors"}


def test_comfyui_backend_queues_polls_and_downloads(comfyui: Peer) -> None:
    gen = create_generator("comfyui", "sd15.safetensors", {"url": comfyui.url, "poll_s": 0.01})
    image = gen.generate("a lighthouse", 11, SETTINGS)
    gen.close()
    assert np.array_equal(np.asarray(image), rgb_of(seeded_png(11, 64, 48)))
    posted = next(body for method, _path, body in comfyui.requests if method == "POST")
    graph = posted["prompt"]
    assert graph["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert graph["6"]["inputs"]["text"] == "a lighthouse"
    assert graph["7"]["inputs"]["text"] == "blurry"
    assert graph["3"]["inputs"]["seed"] == 11 and graph["3"]["inputs"]["cfg"] == 6.0
    history_calls = [p for m, p, _ in comfyui.requests if p.startswith("/history/")]
    assert len(history_calls) >= 2  # it polled until the job finished
    assert any(p.startswith("/view?") for _, p, _ in comfyui.requests)


def test_comfyui_custom_workflow_placeholders(tmp_path: Path) -> None:
    graph = fill_workflow(DEFAULT_COMFY_WORKFLOW, {"prompt": "p", "seed": 3, "width": 512})
    assert graph["6"]["inputs"]["text"] == "p" and graph["3"]["inputs"]["seed"] == 3
    assert graph["7"]["inputs"]["text"] == "$negative_prompt"  # unknown: left alone
    assert DEFAULT_COMFY_WORKFLOW["6"]["inputs"]["text"] == "$prompt"  # template untouched
    from genguard.errors import ConfigError

    bad = tmp_path / "wf.json"
    bad.write_text("[]")
    with pytest.raises(ConfigError, match="API-format"):
        create_generator("comfyui", "m", {"workflow": str(bad)})


def test_unreachable_or_broken_peers_are_generator_errors(a1111: Peer) -> None:
    from tests.server.conftest import free_port

    gone = create_generator("a1111", "", {"url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(GeneratorError, match="cannot reach"):
        gone.generate("x", 1, SETTINGS)
    a1111.routes[("POST", "/sdapi/v1/txt2img")] = lambda *_: json_reply({"images": ["%%%"]})
    broken = create_generator("a1111", "", {"url": a1111.url})
    with pytest.raises(GeneratorError, match="not base64"):
        broken.generate("x", 1, SETTINGS)
    a1111.routes[("POST", "/sdapi/v1/txt2img")] = lambda *_: json_reply({"error": "OOM"}, 500)
    with pytest.raises(GeneratorError, match="answered 500"):
        broken.generate("x", 1, SETTINGS)


@pytest.mark.parametrize("backend", ["a1111", "comfyui"])
def test_gateway_generates_through_http_backends(
    harness_factory, backend: str, request: pytest.FixtureRequest
) -> None:
    peer: Peer = request.getfixturevalue(backend)
    harness: Harness = harness_factory(
        generator={
            "backend": backend,
            "model": "m.safetensors",
            "options": {"url": peer.url, "poll_s": 0.01},
        },
    )
    response = harness.client.post(
        "/v1/generate",
        headers=auth(harness.key()),
        json={"prompt": "a lighthouse", "n": 2, "seed": 5, "width": 64, "height": 64},
    )
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert [item["seed"] for item in images] == [5, 6]
    for item, seed in zip(images, (5, 6), strict=True):
        assert np.array_equal(
            rgb_of(base64.b64decode(item["image"])), rgb_of(seeded_png(seed, 64, 64))
        )


def test_gateway_with_tiny_diffusers_pipeline(harness_factory, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from tests.tiny_diffusers import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path / "tiny")
    harness = harness_factory(
        generator={
            "backend": "diffusers",
            "model": str(folder),
            "options": {"device": "cpu"},
            "max_side": 64,
        },
    )
    body = {"prompt": "a lighthouse", "seed": 3, "steps": 2, "width": 64, "height": 64}
    first = harness.client.post("/v1/generate", headers=auth(harness.key()), json=body)
    assert first.status_code == 200, first.text
    second = harness.client.post("/v1/generate", headers=auth(harness.key("b")), json=body)
    a, b = (rgb_of(base64.b64decode(r.json()["images"][0]["image"])) for r in (first, second))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)  # seeded: reproducible
    assert a.std() > 1  # a real pipeline's output, not a flat placeholder
    assert first.json()["images"][0]["action"] == "allow"
    assert first.json()["images"][0]["decision"]["timings_ms"]["generate"] > 0
