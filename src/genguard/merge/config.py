"""The merge recipe: a YAML file validated by pydantic, in the spirit of mergekit's.

Example::

    method: task_arithmetic
    base_model: sd15-base.safetensors
    models:
      - model: style-finetune.safetensors
        parameters: {weight: 0.7}
      - model: unwanted-finetune.safetensors
        parameters: {weight: -1.0}        # negation: remove what it added
    parameters:
      lambda:                             # a parameter may vary per UNet block
        default: 1.0                      # BASE: text encoder, VAE, anything not UNet
        blocks: {IN00: 0.5, M00: 1.0}     # or a list of 25 (SD1/2) / 19 (SDXL) values
    dtype: fp16                           # auto | fp16 | bf16 | fp32
    on_missing: error                     # or copy_base
    on_shape_mismatch: error              # or copy_base

Relative paths are resolved against the YAML file's folder. Every problem is reported as
a :class:`~genguard.errors.ConfigError` naming the field path (``models.1.parameters``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genguard.errors import ConfigError
from genguard.merge.blocks import BASE_BLOCK, Architecture
from genguard.merge.methods import MergeMethod, get_method


class BlockWeights(BaseModel):
    """A parameter value that differs per UNet block."""

    model_config = ConfigDict(extra="forbid")

    default: float | None = Field(
        default=None, description="value for BASE (non-UNet keys) and unlisted blocks"
    )
    blocks: list[float] | dict[str, float]

    @field_validator("blocks", mode="before")
    @classmethod
    def _split_string(cls, value: Any) -> Any:
        """Accept supermerger's comma-separated form, e.g. ``"0,0.5,1,..."``."""
        if isinstance(value, str):
            try:
                return [float(v) for v in value.split(",") if v.strip()]
            except ValueError as exc:
                raise ValueError(f"not a comma-separated list of numbers: {value!r}") from exc
        return value

    def table(self, arch: Architecture, where: str) -> dict[str, float]:
        """Expand to a full {block: value} table for ``arch``, or explain what is wrong."""
        names = arch.block_names
        if not names:
            raise ConfigError(
                f"{where}: per-block weights need an SD 1.x/2.x/SDXL UNet, but the "
                "checkpoint layout was not recognised"
            )
        if isinstance(self.blocks, list):
            return self._from_list(self.blocks, names, arch, where)
        unknown = sorted(set(self.blocks) - set(names) - {BASE_BLOCK})
        if unknown:
            raise ConfigError(
                f"{where}.blocks: unknown block(s) {', '.join(unknown)} for {arch.value} "
                f"(valid: {names[0]}..{names[-1]}, BASE)"
            )
        default = self.blocks.get(BASE_BLOCK, self.default)
        missing = [n for n in names if n not in self.blocks]
        if default is None and (missing or BASE_BLOCK not in self.blocks):
            raise ConfigError(f"{where}.default: needed for BASE and unlisted blocks")
        table = {n: self.blocks.get(n, default) for n in [BASE_BLOCK, *names]}
        return {k: float(v) for k, v in table.items() if v is not None}

    def _from_list(
        self, blocks: list[float], names: list[str], arch: Architecture, where: str
    ) -> dict[str, float]:
        values = list(blocks)
        if len(values) == len(names) + 1:
            if self.default is not None:
                raise ConfigError(
                    f"{where}: the list already starts with BASE; drop 'default' or "
                    "give one value per block"
                )
            base, values = values[0], values[1:]
        elif len(values) == len(names):
            if self.default is None:
                raise ConfigError(f"{where}.default: needed for BASE (non-UNet) keys")
            base = self.default
        else:
            raise ConfigError(
                f"{where}.blocks: {arch.value} has {len(names)} blocks "
                f"({names[0]}..{names[-1]}); give {len(names)} values, or "
                f"{len(names) + 1} with BASE first (got {len(values)})"
            )
        return {BASE_BLOCK: float(base), **dict(zip(names, values, strict=True))}


ParamValue = float | BlockWeights


class ModelSpec(BaseModel):
    """One input model of the merge."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    name: str | None = None
    parameters: dict[str, ParamValue] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """Name used in reports: the given name or the file stem."""
        return self.name or self.model.stem


class MergeConfig(BaseModel):
    """A validated merge recipe."""

    model_config = ConfigDict(extra="forbid")

    method: str
    models: list[ModelSpec] = Field(min_length=1)
    base_model: Path | None = None
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    seed: int = 0
    on_missing: Literal["error", "copy_base"] = "error"
    on_shape_mismatch: Literal["error", "copy_base"] = "error"

    @field_validator("models", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """Allow ``models: [a.safetensors, b.safetensors]`` as well as full entries."""
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value

    @property
    def merge_method(self) -> MergeMethod:
        """The registered method this recipe uses."""
        return get_method(self.method)

    def primary_path(self) -> Path:
        """The source whose keys the output keeps and that ``copy_base`` copies from."""
        if self.merge_method.primary == "base":
            assert self.base_model is not None  # guaranteed by validate_method
            return self.base_model
        return self.models[0].model

    def sources(self) -> list[tuple[str, Path]]:
        """(role, path) of every input file, models first, base last."""
        out = [(f"models.{i}", m.model) for i, m in enumerate(self.models)]
        if self.base_model is not None:
            out.append(("base_model", self.base_model))
        return out

    def recipe(self) -> dict[str, Any]:
        """The recipe as stored in the output's metadata (file names, not full paths)."""
        data = self.model_dump(mode="json")
        for m in data["models"]:
            m["model"] = Path(m["model"]).name
        if data["base_model"]:
            data["base_model"] = Path(data["base_model"]).name
        return data


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{loc}: {err['msg']}")
    return "invalid merge config: " + "; ".join(lines)


def _check_params(
    given: dict[str, ParamValue], allowed: dict[str, float], where: str, method: str
) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(
            f"{where}.{unknown[0]}: method {method!r} has no parameter {unknown[0]!r} "
            f"(valid: {valid})"
        )
    for name, value in given.items():
        values = [value] if isinstance(value, float | int) else _block_values(value)
        if any(not math.isfinite(v) for v in values):
            raise ConfigError(f"{where}.{name}: must be a finite number")
        if name in _UNIT_INTERVAL and any(not 0.0 <= v <= 1.0 for v in values):
            raise ConfigError(f"{where}.{name}: {name} must be between 0 and 1")
        if name in _FLAGS and any(v not in (0.0, 1.0) for v in values):
            raise ConfigError(f"{where}.{name}: {name} is a switch, 0 or 1")


#: Parameters that are shares of a tensor's entries.
_UNIT_INTERVAL = frozenset({"density", "gamma", "epsilon"})
#: Parameters that switch a step on (1) or off (0).
_FLAGS = frozenset({"normalize", "rescale", "filter_wise"})


def _scalar(value: ParamValue | None) -> float | None:
    return float(value) if isinstance(value, float | int) else None


def _check_epsilon(spec: ModelSpec, method: MergeMethod, where: str) -> None:
    """DELLA keeps entries with probabilities in density +/- epsilon: both must be in (0, 1).

    Scalar values are checked here, before any file is opened; per-block ones when the
    method meets them.
    """
    if "epsilon" not in method.model_params:
        return
    density = _scalar(spec.parameters.get("density", method.model_params.get("density")))
    epsilon = _scalar(spec.parameters.get("epsilon", method.model_params["epsilon"]))
    if density is None or epsilon is None or not 0.0 < density < 1.0:
        return
    if not (density - epsilon > 0.0 and density + epsilon < 1.0):
        raise ConfigError(
            f"{where}.epsilon: density - epsilon and density + epsilon must lie inside "
            f"(0, 1) (density {density:g}, epsilon {epsilon:g})"
        )


def _block_values(value: BlockWeights) -> list[float]:
    blocks = value.blocks if isinstance(value.blocks, list) else list(value.blocks.values())
    return [*blocks, *([value.default] if value.default is not None else [])]


#: |sum of weights| below this cannot be normalised (the result would blow up).
MIN_WEIGHT_SUM = 1e-6


def weight_sum_problem(weights: list[float], normalize: float, where: str) -> str | None:
    """Why ``linear``-style normalisation by ``sum(weights)`` is impossible, or None."""
    total = sum(weights)
    if not normalize or abs(total) >= MIN_WEIGHT_SUM:
        return None
    shown = " + ".join(f"{w:g}" for w in weights)
    return (
        f"{where}: the models' weights sum to 0 ({shown}), so normalising by their sum "
        "would blow the result up; change a weight or set parameters.normalize: 0"
    )


def _check_weight_sum(cfg: MergeConfig, method: MergeMethod) -> None:
    """Refuse scalar weights summing to ~0 (per-block ones are checked by the engine)."""
    if not method.normalizes_weights:
        return
    normalize = cfg.parameters.get("normalize", method.params.get("normalize", 1.0))
    default = method.model_params.get("weight", 1.0)
    weights = [m.parameters.get("weight", default) for m in cfg.models]
    scalars = [float(w) for w in weights if not isinstance(w, BlockWeights)]
    if isinstance(normalize, BlockWeights) or len(scalars) != len(weights):
        return
    where = f"models.{len(cfg.models) - 1}.parameters.weight"
    problem = weight_sum_problem(scalars, float(normalize), where)
    if problem:
        raise ConfigError(problem)


def validate_method(cfg: MergeConfig) -> MergeMethod:
    """Check the recipe against its method's contract (counts, base, parameter names)."""
    method = cfg.merge_method
    n = len(cfg.models)
    if n < method.min_models or (method.max_models is not None and n > method.max_models):
        want = (
            str(method.min_models)
            if method.max_models == method.min_models
            else f"at least {method.min_models}"
            if method.max_models is None
            else f"{method.min_models}-{method.max_models}"
        )
        raise ConfigError(f"models: method {method.name!r} takes {want} model(s), got {n}")
    if method.needs_base and cfg.base_model is None:
        raise ConfigError(f"base_model: method {method.name!r} needs a base_model")
    if not method.needs_base and cfg.base_model is not None:
        raise ConfigError(f"base_model: method {method.name!r} does not use a base_model")
    _check_params(cfg.parameters, method.params, "parameters", method.name)
    for i, spec in enumerate(cfg.models):
        where = f"models.{i}.parameters"
        _check_params(spec.parameters, method.model_params, where, method.name)
        _check_epsilon(spec, method, where)
        weight = spec.parameters.get("weight")
        if method.positive_weights and weight is not None:
            values = [weight] if isinstance(weight, float | int) else _block_values(weight)
            if any(v <= 0 for v in values):
                raise ConfigError(
                    f"{where}.weight: {method.name!r} needs positive weights (for negation "
                    "use task_arithmetic with a negative weight)"
                )
    _check_weight_sum(cfg, method)
    return method


def parse_config(data: Any, base_dir: Path | None = None) -> MergeConfig:
    """Validate a recipe given as a dict; resolve relative paths against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError("invalid merge config: expected a mapping at the top level")
    try:
        cfg = MergeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    if base_dir is not None:
        for spec in cfg.models:
            spec.model = _resolve(spec.model, base_dir)
        if cfg.base_model is not None:
            cfg.base_model = _resolve(cfg.base_model, base_dir)
    validate_method(cfg)
    return cfg


def _resolve(path: Path, base_dir: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base_dir / path)


def load_config(path: str | Path) -> MergeConfig:
    """Read and validate a YAML recipe file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: merge config not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, base_dir=path.parent)
