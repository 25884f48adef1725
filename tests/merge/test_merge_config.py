"""Recipe validation: every bad config fails with the field path in the message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from merge_helpers import SD1_KEYS, random_state

from genguard.errors import ConfigError
from genguard.merge import load_config, parse_config


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"method": "blend", "models": ["a", "b"]}, r"method: unknown merge method 'blend'"),
        ({"method": "slerp", "models": ["a"]}, r"models: method 'slerp' takes 2 model\(s\), got 1"),
        ({"method": "ties", "models": ["a"]}, r"base_model: method 'ties' needs a base_model"),
        (
            {"method": "slerp", "models": ["a", "b"], "base_model": "c"},
            r"base_model: method 'slerp' does not use a base_model",
        ),
        (
            {"method": "slerp", "models": ["a", "b"], "parameters": {"alpha": 0.5}},
            r"parameters\.alpha: method 'slerp' has no parameter 'alpha' \(valid: t\)",
        ),
        (
            {
                "method": "ties",
                "base_model": "c",
                "models": ["a", {"model": "b", "parameters": {"densty": 0.5}}],
            },
            r"models\.1\.parameters\.densty: method 'ties' has no parameter",
        ),
        (
            {
                "method": "dare_ties",
                "base_model": "c",
                "models": [{"model": "a", "parameters": {"density": 1.5}}],
            },
            r"models\.0\.parameters\.density: density must be between 0 and 1",
        ),
        (
            {
                "method": "ties",
                "base_model": "c",
                "models": [{"model": "a", "parameters": {"weight": -1}}],
            },
            r"models\.0\.parameters\.weight: 'ties' needs positive weights",
        ),
        ({"method": "slerp", "modles": ["a", "b"]}, r"models: Field required.*modles: Extra"),
        ({"method": "slerp", "models": ["a", "b"], "dtype": "fp8"}, r"dtype: Input should be"),
        (
            {"method": "slerp", "models": ["a", {"model": "b", "weight": "x"}]},
            r"models\.1\.weight: Extra inputs",
        ),
        ({"method": "slerp", "models": []}, r"models: List should have at least 1 item"),
        (
            {
                "method": "weighted_sum",
                "models": ["a", "b"],
                "parameters": {"alpha": {"blocks": "0,x"}},
            },
            r"not a comma-separated list",
        ),
        (
            {"method": "weighted_sum", "models": ["a", "b"], "parameters": {"alpha": float("nan")}},
            r"parameters\.alpha: must be a finite number",
        ),
        (["not", "a", "mapping"], r"expected a mapping"),
    ],
)
def test_bad_configs(recipe, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(recipe)


def test_load_config_resolves_paths_relative_to_the_file(tmp_path: Path, write_recipe) -> None:
    path = write_recipe({"method": "weighted_sum", "models": ["a.safetensors", "/x/b.safetensors"]})
    cfg = load_config(path)
    assert cfg.models[0].model == tmp_path / "a.safetensors"
    assert cfg.models[1].model == Path("/x/b.safetensors")
    assert cfg.models[0].label == "a" and cfg.primary_path() == tmp_path / "a.safetensors"


def test_primary_model_is_the_base_for_task_vector_methods(tmp_path: Path) -> None:
    cfg = parse_config(
        {"method": "task_arithmetic", "base_model": "b.st", "models": ["ft.st"]}, base_dir=tmp_path
    )
    assert cfg.primary_path() == tmp_path / "b.st"
    assert [r for r, _ in cfg.sources()] == ["models.0", "base_model"]


def test_missing_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="merge config not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_block_list_needs_a_base_value(make_ckpt: Callable, tmp_path: Path) -> None:
    from genguard.merge import merge

    pa = make_ckpt("a", random_state(SD1_KEYS, 1))
    pb = make_ckpt("b", random_state(SD1_KEYS, 2))
    cfg = parse_config(
        {
            "method": "weighted_sum",
            "models": [str(pa), str(pb)],
            "parameters": {"alpha": {"blocks": [0.5] * 25}},
        }
    )
    with pytest.raises(ConfigError, match=r"parameters\.alpha\.default: needed for BASE"):
        merge(cfg, tmp_path / "o.safetensors")
    cfg = parse_config(
        {
            "method": "weighted_sum",
            "models": [str(pa), str(pb)],
            "parameters": {"alpha": {"default": 0.1, "blocks": [0.5] * 26}},
        }
    )
    with pytest.raises(ConfigError, match="already starts with BASE"):
        merge(cfg, tmp_path / "o.safetensors")


def _linear(*weights, **params) -> dict:
    models = [{"model": f"m{i}", "parameters": {"weight": w}} for i, w in enumerate(weights)]
    return {"method": "linear", "models": models, "parameters": params}


@pytest.mark.parametrize("weights", [(1.0, -1.0), (0.5, -0.4999999), (0.0,), (1.0, -0.5, -0.5)])
def test_linear_weights_summing_to_zero_are_refused(weights) -> None:
    last = len(weights) - 1
    with pytest.raises(ConfigError, match=rf"^models\.{last}\.parameters\.weight: .*sum to 0"):
        parse_config(_linear(*weights))
    parse_config(_linear(*weights, normalize=0))  # no division: fine


def test_linear_block_weights_summing_to_zero_are_refused(make_ckpt: Callable) -> None:
    from genguard.merge import merge

    pa, pb = make_ckpt("a", random_state(SD1_KEYS, 1)), make_ckpt("b", random_state(SD1_KEYS, 2))
    recipe = _linear({"default": 1.0, "blocks": {"M00": 1.0}}, 1.0)
    recipe["models"][0]["model"], recipe["models"][1]["model"] = str(pa), str(pb)
    recipe["models"][1]["parameters"]["weight"] = {"default": 1.0, "blocks": {"M00": -1.0}}
    with pytest.raises(ConfigError, match=r"models\.1\.parameters\.weight: .*sum to 0.*M00"):
        merge(parse_config(recipe), pa.parent / "o.safetensors")
    assert not (pa.parent / "o.safetensors").exists()
