"""Generator backends over HTTP: A1111 and ComfyUI against fake peers speaking their shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genguard.errors import GeneratorError
from genguard.generators import GenerationSettings, create_generator
from genguard.generators.http import DEFAULT_COMFY_WORKFLOW, fill_workflow
from tests.server.conftest import rgb_of
from tests.server.peers import Peer, json_reply, seeded_png

SETTINGS = GenerationSettings(steps=4, guidance=6.0, width=64, height=48, negative_prompt="blurry")


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
