"""int8 variants of the ONNX image models: built once, cached by key, offered only if agreeing.

The cache mechanics run on a tiny convolutional ONNX graph built here (quantised in well
under a second); the agreement check runs the real NudeNet / OpenNSFW models and is slow.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from genguard import settings
from genguard.content import load_image
from genguard.detectors import nudenet, opennsfw, quantize
from genguard.detectors.base import create_detector
from genguard.detectors.onnx_export import file_digest
from genguard.errors import ConfigError
from genguard.guard import Guard
from genguard.policy import load_policy

SIDE = 16
TINY = quantize.Recipe("tiny")


def _tiny_model(path: Path, seed: int = 0) -> Path:
    """Conv(3->4, 3x3) -> Relu -> global average: a graph quantize_static handles fully."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["y"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _blob(frame: np.ndarray) -> np.ndarray:
    small = np.asarray(Image.fromarray(frame).resize((SIDE, SIDE)), dtype=np.float32)
    return small.transpose(2, 0, 1) / 255.0


def _run(session: Any, frames: list[np.ndarray]) -> np.ndarray:
    batch = np.stack([_blob(f) for f in frames])
    (out,) = session.run(None, {"x": batch})
    return np.asarray(out)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GENGUARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(quantize, "builds", {})
    return tmp_path / "cache" / "onnx"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _tiny_model(tmp_path / "tiny.onnx")


def test_int8_model_is_built_once_then_read_from_the_cache(cache: Path, tiny: Path) -> None:
    first = quantize.int8_model(tiny, TINY, _blob)
    assert first.parent == cache and first.name.startswith("tiny-int8-")
    stamp = first.stat().st_mtime_ns
    second = quantize.int8_model(tiny, TINY, _blob)
    assert second == first and second.stat().st_mtime_ns == stamp
    assert quantize.builds == {"tiny": 1}
    assert list(cache.iterdir()) == [first]  # no temporary files left behind


def test_the_int8_session_approximates_the_float_model(cache: Path, tiny: Path) -> None:
    """Within the calibrated range; beyond it activations clip (docs/backends.md says so)."""
    import onnx

    frames = quantize.calibration_frames(count=10)
    int8 = quantize.session(str(tiny), "int8", TINY, _blob, threads=1)
    built = onnx.load(int8.get()._model_path)
    assert any(node.op_type == "QuantizeLinear" for node in built.graph.node)
    reference = _run(quantize.session(str(tiny), "fp32", TINY, _blob, threads=1).get(), frames)
    quantised = _run(int8.get(), frames)
    error, scale = np.abs(quantised - reference), np.abs(reference).max()
    assert error.mean() < 0.02 * scale and error.max() < 0.1 * scale
    assert (quantised.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_a_corrupt_cache_file_is_rebuilt_not_a_crash(cache: Path, tiny: Path) -> None:
    path = quantize.int8_model(tiny, TINY, _blob)
    path.write_bytes(b"\x08\x07 not a protobuf" + path.read_bytes()[:100])
    session = quantize.session(str(tiny), "int8", TINY, _blob, threads=1).get()
    assert _run(session, quantize.calibration_frames(count=2, size=32)).shape == (2, 4)
    assert quantize.builds == {"tiny": 2}


def test_a_stale_key_builds_a_new_file(
    cache: Path, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = quantize.int8_model(tiny, TINY, _blob)
    with monkeypatch.context() as patch:  # a new onnxruntime: the old file is not reused
        patch.setattr(quantize, "onnxruntime_version", lambda: "0.0.other")
        upgraded = quantize.int8_model(tiny, TINY, _blob)
    assert upgraded != original and upgraded.is_file() and original.is_file()
    assert quantize.builds == {"tiny": 2}
    retrained = _tiny_model(tmp_path / "retrained.onnx", seed=1)  # same name, new bytes
    assert quantize.cache_path(retrained, TINY) != original
    assert quantize.cache_path(tiny, quantize.Recipe("tiny", per_channel=True)) != original
    assert quantize.cache_path(tiny, TINY) == original


def test_calibration_frames_are_deterministic_and_varied() -> None:
    first, again = quantize.calibration_frames(count=10), quantize.calibration_frames(count=10)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    means = [float(frame.mean()) for frame in first]
    assert min(means) < 60 and max(means) > 150  # dark and bright frames both present
    assert all(frame.shape == (320, 320, 3) and frame.dtype == np.uint8 for frame in first)


# -- choosing a precision ---------------------------------------------------------------


def test_precision_setting_is_global_or_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENGUARD_PRECISION", raising=False)
    assert settings.precision("nudenet") == "fp32"
    monkeypatch.setenv("GENGUARD_PRECISION", " INT8 ")
    assert settings.precision("nudenet") == "int8"
    monkeypatch.setenv("GENGUARD_PRECISION", "opennsfw=int8, nudenet=fp32")
    assert settings.precision("opennsfw") == "int8"
    assert settings.precision("nudenet") == "fp32"
    assert settings.precision("other") == "fp32"


def _record(recipe: quantize.Recipe, share: float) -> dict[str, Any]:
    agreement = {"standard": 1.0, "strict": share, "flag": 1.0}
    source = Path(nudenet.model_path() if recipe.model == "nudenet" else opennsfw.model_path())
    digest = file_digest(source)
    return {"recipe": recipe.key, "source_sha256": digest, "images": 540, "agreement": agreement}


def test_an_int8_variant_below_the_bar_is_refused_with_its_agreement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = {"models": {"nudenet": _record(nudenet.INT8_RECIPE, 0.972)}}
    monkeypatch.setattr(quantize, "recorded_agreement", lambda: record)
    with pytest.raises(ConfigError) as caught:
        create_detector("nudenet:?precision=int8")
    message = str(caught.value)
    assert "int8 nudenet is not offered" in message
    assert "97.2% of 540" in message and "(strict)" in message and "99%" in message
    assert "\n" not in message


def test_an_unmeasured_recipe_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    stale = {"models": {"opennsfw": {**_record(opennsfw.INT8_RECIPE, 1.0), "recipe": "old"}}}
    monkeypatch.setattr(quantize, "recorded_agreement", lambda: stale)
    monkeypatch.setenv("GENGUARD_PRECISION", "opennsfw=int8")
    with pytest.raises(ConfigError, match=r"no measured agreement.*bench/scan\.py --agreement"):
        create_detector("opennsfw")
    assert create_detector("nudenet").precision == "fp32"  # the setting named opennsfw only


def test_an_offered_variant_is_accepted_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"models": {"opennsfw": _record(opennsfw.INT8_RECIPE, 0.995)}}
    monkeypatch.setattr(quantize, "recorded_agreement", lambda: record)
    detector = create_detector("opennsfw:?precision=int8")
    assert detector.precision == "int8"
    assert isinstance(detector._session, quantize.Int8Session)
    assert detector._session._session is None  # nothing built until the first image


def test_int8_of_another_model_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    record = {"models": {"opennsfw": _record(opennsfw.INT8_RECIPE, 1.0)}}
    monkeypatch.setattr(quantize, "recorded_agreement", lambda: record)
    other = _tiny_model(tmp_path / "other.onnx")
    with pytest.raises(ConfigError, match="measured on the shipped model only"):
        create_detector(f"opennsfw:{other}?precision=int8")
    assert create_detector(f"opennsfw:{other}").precision == "fp32"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nudenet:?precision=int4", "must be one of fp32, int8, not 'int4'"),
        ("opennsfw:?speed=fast", r"unknown option\(s\) \['speed'\]"),
    ],
)
def test_bad_precision_options_are_one_line_errors(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_detector(spec)


def test_fp32_is_the_default_and_needs_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENGUARD_PRECISION", raising=False)
    monkeypatch.setattr(quantize, "recorded_agreement", lambda: pytest.fail("read the record"))
    assert create_detector("nudenet").precision == "fp32"
    assert create_detector("opennsfw:?precision=fp32").precision == "fp32"


def test_the_shipped_record_matches_the_current_recipes() -> None:
    """A recipe change without a new measurement would silently withdraw the variant."""
    record = quantize.recorded_agreement()
    assert record, "genguard/data/int8_agreement.json is missing"
    for recipe in (nudenet.INT8_RECIPE, opennsfw.INT8_RECIPE):
        entry = record["models"][recipe.model]
        assert entry["recipe"] == recipe.key, f"re-run bench/scan.py --agreement for {recipe}"
        shipped = nudenet.model_path() if recipe.model == "nudenet" else opennsfw.model_path()
        assert entry["source_sha256"] == file_digest(Path(shipped))
        assert entry["images"] >= 300
        assert set(entry["agreement"]) == {"standard", "strict", "flag"}


# -- agreement on real models (slow) ---------------------------------------------------


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _offered() -> list[str]:
    models = quantize.recorded_agreement().get("models", {})
    return [
        name
        for name, entry in models.items()
        if min(entry["agreement"].values()) >= quantize.REQUIRED_AGREEMENT
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nudenet", "opennsfw"])
def test_offered_int8_decisions_agree_with_fp32(name: str, frames: list[np.ndarray]) -> None:
    if name not in _offered():
        with pytest.raises(ConfigError, match="not offered"):
            create_detector(f"{name}:?precision=int8")
        return
    rng = np.random.default_rng(0)
    art = [*quantize.calibration_frames(count=5, size=256, seed=7)]
    varied = [*frames, *art]
    varied += [_jpeg(f, 40) for f in varied[:4]]
    varied += [np.clip(f + rng.normal(0, 10, f.shape), 0, 255).astype(np.uint8) for f in art]
    loaded = [load_image(frame) for frame in varied]
    other = "opennsfw" if name == "nudenet" else "nudenet"
    reference = [create_detector(n, threads=1) for n in (name, other)]
    quantised = [create_detector(f"{name}:?precision=int8", threads=1), reference[1]]
    for profile in ("standard", "strict"):
        policy = load_policy(profile)
        expected = [d.action for d in Guard(policy, reference).check_loaded(loaded)]
        actual = [d.action for d in Guard(policy, quantised).check_loaded(loaded)]
        share = quantize.agreement(expected, actual)
        assert share >= quantize.REQUIRED_AGREEMENT, (profile, expected, actual)
