"""Shared fixtures: benign photos generated from scikit-image's bundled samples.

Nothing explicit is ever committed or generated: positive cases use synthetic signals
(fake detectors), and real models are only asked to stay quiet on benign photos.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest
from PIL import Image

from genguard.decision import Region

#: Embedding needs an operator key; without one the first embed writes a per-install key
#: file under ./genguard-data. Tests get a fixed key instead (tests of the key file itself
#: remove this variable), so no run leaves a key file in the working tree.
os.environ.setdefault("GENGUARD_WATERMARK_KEY", "0x7e57c0de7e57")
from genguard.detectors.base import DetectorOutput
from tests.server.peers import Peer, json_reply, seeded_png


def _photo(name: str, size: int = 320) -> Image.Image:
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)())
    image.thumbnail((size, size))
    return image.convert("RGB")


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few benign photos as files: astronaut (a face), coffee, chelsea (a cat), rocket."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = folder / f"{name}.jpg"
        _photo(name).save(path, quality=90)
        paths[name] = path
    return paths


@pytest.fixture(scope="session")
def real_guard():
    """A standard-policy Guard with the real NudeNet + OpenNSFW models (loaded once)."""
    from genguard.guard import Guard

    return Guard.from_policy("standard", threads=1)


class FakeDetector:
    """Emits chosen synthetic signals per frame, so policy paths are tested without imagery.

    ``plan`` maps a frame's mean grey level bucket to regions, so that different test
    images (solid colours) get different signals.
    """

    name = "fake"
    categories = ("sexual_explicit", "nudity", "suggestive", "face", "violence")

    def __init__(self, regions_by_level: dict[int, list[Region]] | None = None, nsfw: float = 0.0):
        self.regions_by_level = regions_by_level or {}
        self.nsfw = nsfw
        self.calls: list[int] = []

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        self.calls.append(len(frames))
        outputs = []
        for frame in frames:
            level = int(frame.mean()) // 10 * 10
            regions = [
                Region(
                    box=r.box, label=r.label, category=r.category, score=r.score, backend=self.name
                )
                for r in self.regions_by_level.get(level, [])
            ]
            outputs.append(DetectorOutput(backend=self.name, regions=regions))
        return outputs


def solid(level: int, size: tuple[int, int] = (200, 160)) -> np.ndarray:
    """A solid grey RGB image; its level selects the FakeDetector's plan."""
    return np.full((size[1], size[0], 3), level, dtype=np.uint8)


def nudity_region(box=(20, 30, 60, 50), score: float = 0.9) -> Region:
    return Region(
        box=box, label="FEMALE_BREAST_EXPOSED", category="nudity", score=score, backend="fake"
    )


#: Modules whose tests load model weights (torch, transformers, MiniLM, diffusers), start
#: services (Ray, a live server, a browser) or fuzz for long: the slow tier. The fast tier
#: (`make test-fast`, `pytest -m "not slow"`) is everything else.
SLOW_MODULES = (
    "tests/engines/test_ray.py",
    "tests/server/test_live.py",
    "tests/server/test_connection_limits.py",
    "tests/server/test_openapi_fuzz.py",
    "tests/server/test_review_browser.py",
    "tests/server/test_generator_backends.py",
    "tests/audit/test_audit_diffusers.py",
    "tests/detectors/",
    "tests/text/test_semantic.py",
    "tests/video/test_pipeline.py",
    "tests/test_detectors_guard.py",
    "tests/integrations/test_diffusers.py",
    "tests/integrations/test_comfyui_nodes.py",
    "tests/faces/",
    "tests/watch/test_watch_cli.py",
)
#: Fixtures that load models or start services: a test using one is slow wherever it is.
SLOW_FIXTURES = frozenset({"real_guard", "postgres_url", "redis_url", "live_server", "browser"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast tier: skip (without even importing) model, service and browser tests",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With --fast, slow modules are not imported at all (importing torch/diffusers alone
    costs ~10 s of collection)."""
    if not config.getoption("--fast"):
        return None
    where = collection_path.resolve().relative_to(Path(str(config.rootpath)).resolve())
    return where.as_posix().startswith(SLOW_MODULES) or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    slow = []
    for item in items:
        where = Path(str(item.fspath)).relative_to(root).as_posix()
        fixtures = set(getattr(item, "fixturenames", ()))
        if where.startswith(SLOW_MODULES) or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is not None:
            slow.append(item)
    if config.getoption("--fast") and slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


# -- fake generation servers (A1111, ComfyUI) speaking their HTTP shapes ---------------


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


@pytest.fixture
def private_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private working directory and cache: the default database is the test's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENGUARD_STORE", raising=False)
    monkeypatch.setenv("GENGUARD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``genguard ARGS`` in-process: (exit code, stdout, stderr with wrapping undone)."""
    from genguard.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long error lines
