"""Generator backends that call a generation server over HTTP: AUTOMATIC1111 and ComfyUI.

Both register into genguard's generator registry (:mod:`genguard.generators`), so
the gateway (``[generator] backend = "a1111"``) and the model audit share one notion of
a generator. The generation server stays behind the gateway: clients never reach it, so
every image it makes passes the output check.

* ``a1111``: ``POST {url}/sdapi/v1/txt2img`` -> ``{"images": [base64 PNG...]}``; ``model``,
  when set, is sent as ``override_settings.sd_model_checkpoint``.
* ``comfyui``: ``POST {url}/prompt`` with an API-format workflow graph -> ``prompt_id``;
  poll ``GET {url}/history/{prompt_id}`` until outputs appear; fetch the image with
  ``GET {url}/view?filename=...&subfolder=...&type=output``. ``model`` is the checkpoint
  file name for ``CheckpointLoaderSimple``; option ``workflow`` names an API-format JSON
  file whose string values ``$prompt``, ``$negative_prompt``, ``$seed``, ``$steps``,
  ``$cfg``, ``$width``, ``$height``, ``$model`` are substituted.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from genguard.errors import ConfigError, GeneratorError
from genguard.generators.base import GenerationSettings, ImageGenerator, register_generator

log = logging.getLogger("genguard.generators")

DEFAULT_TIMEOUT_S = 300.0


def _base_url(options: dict[str, Any], default: str) -> str:
    url = str(options.get("url", default)).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"generator url must start with http:// or https://, got {url!r}")
    return url


_USERINFO = re.compile(r"://[^/@\s]+@")


def redact(url: str | httpx.URL) -> str:
    """The URL without credentials, query or fragment: safe to show to API callers.

    Errors travel to whoever sent the request, so they name the backend by scheme, host,
    port and path only; what the backend said goes to the gateway's log.
    """
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


def _client(options: dict[str, Any]) -> httpx.Client:
    auth = options.get("auth")  # "user:password" for A1111's --api-auth
    user, _, password = str(auth).partition(":") if auth else ("", "", "")
    return httpx.Client(
        timeout=float(options.get("timeout_s", DEFAULT_TIMEOUT_S)),
        auth=(user, password) if auth else None,
        headers={str(k): str(v) for k, v in dict(options.get("headers", {})).items()},
    )


def _decode_png(data: bytes, origin: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        log.warning("generator %s sent a non-image: %s", redact(origin), exc)
        raise GeneratorError(f"{redact(origin)} returned something that is not an image") from exc
    return image.convert("RGB")


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call whose failures all become GeneratorError with the peer's message."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        log.warning("cannot reach generator at %s: %s", redact(url), exc)
        reason = _USERINFO.sub("://", str(exc))[:200] or type(exc).__name__
        raise GeneratorError(f"cannot reach generator at {redact(url)}: {reason}") from exc
    if response.status_code >= 400:
        log.warning(
            "generator answered %s for %s: %s",
            response.status_code,
            redact(url),
            response.text[:300],
        )
        raise GeneratorError(f"generator answered {response.status_code} for {redact(url)}")
    return response


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise GeneratorError(f"generator sent invalid JSON from {redact(response.url)}") from exc


class A1111Generator:
    """AUTOMATIC1111 / Forge web UI started with ``--api``."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self.model = model
        self.url = _base_url(options, "http://127.0.0.1:7860")
        self.sampler = str(options.get("sampler", "Euler a"))
        self.extra = dict(options.get("payload", {}))
        self._client = _client(options)

    def payload(self, prompt: str, seed: int, settings: GenerationSettings) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": settings.negative_prompt,
            "seed": seed,
            "steps": settings.steps,
            "cfg_scale": settings.guidance,
            "width": settings.width,
            "height": settings.height,
            "sampler_name": self.sampler,
            "batch_size": 1,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
            **self.extra,
        }
        if self.model:
            body["override_settings"] = {"sd_model_checkpoint": self.model}
        return body

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        url = f"{self.url}/sdapi/v1/txt2img"
        data = _json(_request(self._client, "POST", url, json=self.payload(prompt, seed, settings)))
        images = data.get("images") if isinstance(data, dict) else None
        if not images or not isinstance(images[0], str):
            raise GeneratorError(f"{redact(url)} returned no images")
        encoded = images[0].split(",", 1)[-1]  # tolerate a data: URL prefix
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise GeneratorError(f"{redact(url)} returned an image that is not base64") from exc
        return _decode_png(raw, url)

    def close(self) -> None:
        self._client.close()


#: ComfyUI's stock text-to-image graph in API format (what "Save (API Format)" exports).
DEFAULT_COMFY_WORKFLOW: dict[str, Any] = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": "$seed",
            "steps": "$steps",
            "cfg": "$cfg",
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "$model"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": "$width", "height": "$height", "batch_size": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "$prompt", "clip": ["4", 1]}},
    "7": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "$negative_prompt", "clip": ["4", 1]},
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "genguard", "images": ["8", 0]}},
}


def fill_workflow(graph: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``graph`` with every ``"$name"`` string replaced by ``values[name]``."""

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and node.startswith("$") and node[1:] in values:
            return values[node[1:]]
        return node

    return fill(copy.deepcopy(graph))


class ComfyUIGenerator:
    """A ComfyUI server: queue a workflow, poll its history, download the image."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self.model = model
        self.url = _base_url(options, "http://127.0.0.1:8188")
        self.poll_s = float(options.get("poll_s", 0.25))
        self.timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))
        self.client_id = str(options.get("client_id", f"genguard-{uuid.uuid4().hex[:12]}"))
        self.workflow = self._workflow(options.get("workflow"))
        self._client = _client(options)

    @staticmethod
    def _workflow(path: Any) -> dict[str, Any]:
        if path is None:
            return DEFAULT_COMFY_WORKFLOW
        try:
            graph = json.loads(Path(str(path)).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read ComfyUI workflow {path}: {exc}") from exc
        if not isinstance(graph, dict) or not graph:
            raise ConfigError(f"{path}: an API-format workflow is a JSON object of nodes")
        return graph

    def graph(self, prompt: str, seed: int, settings: GenerationSettings) -> dict[str, Any]:
        return fill_workflow(
            self.workflow,
            {
                "prompt": prompt,
                "negative_prompt": settings.negative_prompt,
                "seed": seed,
                "steps": settings.steps,
                "cfg": settings.guidance,
                "width": settings.width,
                "height": settings.height,
                "model": self.model,
            },
        )

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        body = {"prompt": self.graph(prompt, seed, settings), "client_id": self.client_id}
        queued = _json(_request(self._client, "POST", f"{self.url}/prompt", json=body))
        prompt_id = queued.get("prompt_id") if isinstance(queued, dict) else None
        if not prompt_id:
            log.warning("ComfyUI did not queue the workflow: %s", str(queued)[:300])
            raise GeneratorError("ComfyUI did not queue the workflow (see the gateway log)")
        entry = self._wait(str(prompt_id))
        ref = self._first_image(entry, str(prompt_id))
        params = {
            "filename": ref.get("filename", ""),
            "subfolder": ref.get("subfolder", ""),
            "type": ref.get("type", "output"),
        }
        response = _request(self._client, "GET", f"{self.url}/view", params=params)
        return _decode_png(response.content, f"{self.url}/view")

    def _wait(self, prompt_id: str) -> dict[str, Any]:
        """Poll the history until the prompt has finished (or failed, or timed out)."""
        deadline = time.monotonic() + self.timeout_s
        url = f"{self.url}/history/{prompt_id}"
        while True:
            history = _json(_request(self._client, "GET", url))
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if isinstance(entry, dict):
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    log.warning("ComfyUI failed prompt %s: %s", prompt_id, status)
                    raise GeneratorError(f"ComfyUI failed prompt {prompt_id} (see the gateway log)")
                if entry.get("outputs") or status.get("completed"):
                    return entry
            if time.monotonic() > deadline:
                raise GeneratorError(f"ComfyUI did not finish prompt {prompt_id} in time")
            time.sleep(self.poll_s)

    @staticmethod
    def _first_image(entry: dict[str, Any], prompt_id: str) -> dict[str, Any]:
        for output in (entry.get("outputs") or {}).values():
            for image in output.get("images") or []:
                if isinstance(image, dict) and image.get("filename"):
                    return image
        raise GeneratorError(f"ComfyUI prompt {prompt_id} finished without an image output")

    def close(self) -> None:
        self._client.close()


@register_generator("a1111")
def _a1111_factory(model: str, options: dict[str, Any]) -> ImageGenerator:
    return A1111Generator(model, options)


@register_generator("comfyui")
def _comfyui_factory(model: str, options: dict[str, Any]) -> ImageGenerator:
    return ComfyUIGenerator(model, options)
