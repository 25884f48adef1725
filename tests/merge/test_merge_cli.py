"""`genguard merge` end to end through the real CLI entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import POSITION_IDS, SD1_KEYS, random_state
from safetensors.numpy import load_file

from genguard.cli import main


def test_merge_command_writes_the_merged_checkpoint(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys
) -> None:
    a, b = random_state(SD1_KEYS, 1), random_state(SD1_KEYS, 2)
    make_ckpt("a", a), make_ckpt("b", b)
    recipe = write_recipe(
        {
            "method": "weighted_sum",
            "models": ["a.safetensors", "b.safetensors"],
            "parameters": {"alpha": 0.75},
        }
    )
    out = tmp_path / "merged.safetensors"
    assert main(["merge", str(recipe), "--out", str(out), "--dtype", "fp32", "-q"]) == 0
    merged = load_file(str(out))
    key = "model.diffusion_model.out.2.weight"
    np.testing.assert_allclose(merged[key], 0.25 * a[key] + 0.75 * b[key], atol=1e-6)
    assert merged[key].dtype == np.float32
    assert "9 tensors: 8 merged" in capsys.readouterr().err.replace("\n", " ")


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"method": "slerp", "models": ["a.safetensors"]}, "takes 2 model(s)"),
        ({"method": "slerp", "models": ["a.safetensors", "zz.safetensors"]}, "no such file"),
    ],
)
def test_merge_command_errors_are_one_line_exit_2(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys, recipe, message
) -> None:
    make_ckpt("a", random_state(SD1_KEYS, 1))
    code = main(["merge", str(write_recipe(recipe)), "--out", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and message in err.replace("\n", " ") and "Traceback" not in err


def test_merge_methods_lists_the_registry(capsys) -> None:
    assert main(["merge-methods"]) == 0
    out = capsys.readouterr().out
    for name in ("weighted_sum", "add_difference", "slerp", "task_arithmetic", "ties", "dare_ties"):
        assert name in out


def test_merge_command_with_progress_bar_and_new_folder(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys
) -> None:
    make_ckpt("a", random_state(SD1_KEYS, 1))
    make_ckpt("b", random_state(SD1_KEYS, 2))
    recipe = write_recipe({"method": "slerp", "models": ["a.safetensors", "b.safetensors"]})
    out = tmp_path / "new" / "folder" / "m.safetensors"
    assert main(["merge", str(recipe), "-o", str(out), "--no-hash"]) == 0
    assert out.is_file() and "slerp" in capsys.readouterr().err


def test_merge_summary_mentions_copied_position_ids(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys
) -> None:
    for name, seed in (("a", 1), ("b", 2)):
        state = random_state(SD1_KEYS, seed)
        state[POSITION_IDS] = state[POSITION_IDS].astype(np.float32)
        make_ckpt(name, state)
    recipe = write_recipe({"method": "weighted_sum", "models": ["a.safetensors", "b.safetensors"]})
    assert main(["merge", str(recipe), "-o", str(tmp_path / "m.safetensors"), "-q"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "position_ids copied from the primary model" in err


def _two_models(make_ckpt: Callable, write_recipe) -> Path:
    make_ckpt("a", random_state(SD1_KEYS, 1))
    make_ckpt("b", random_state(SD1_KEYS, 2))
    return write_recipe({"method": "slerp", "models": ["a.safetensors", "b.safetensors"]})


def test_existing_output_needs_force(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys
) -> None:
    recipe = _two_models(make_ckpt, write_recipe)
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"precious")
    assert main(["merge", str(recipe), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    assert main(["merge", str(recipe), "-o", str(out), "-q", "--force"]) == 0
    assert load_file(str(out))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin", ".CKPT"])
def test_pickle_output_names_are_refused(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys, suffix: str
) -> None:
    recipe = _two_models(make_ckpt, write_recipe)
    out = tmp_path / "sub" / f"m{suffix}"
    assert main(["merge", str(recipe), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "safetensors" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not out.parent.exists()


def test_output_folder_is_not_created_when_inputs_are_bad(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys
) -> None:
    make_ckpt("a", random_state(SD1_KEYS, 1))
    make_ckpt("b", {k: v for k, v in random_state(SD1_KEYS, 2).items() if "fc1" not in k})
    recipe = write_recipe({"method": "slerp", "models": ["a.safetensors", "b.safetensors"]})
    out = tmp_path / "new" / "folder" / "m.safetensors"
    assert main(["merge", str(recipe), "-o", str(out), "-q"]) == 2
    assert "lacks 1 key" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_sigterm_mid_merge_leaves_no_partial_file(
    make_ckpt: Callable, write_recipe, tmp_path: Path, capsys, monkeypatch
) -> None:
    """``kill`` / ``docker stop`` unwind the stack: the half-written output is removed."""
    import os
    import signal

    from genguard.merge import engine

    recipe = _two_models(make_ckpt, write_recipe)
    out = tmp_path / "m.safetensors"
    produced = []
    original = engine._produce

    def produce_then_terminate(*args, **kwargs):
        produced.append(1)
        if len(produced) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives between two tensors
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_produce", produce_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        main(["merge", str(recipe), "-o", str(out), "-q"])
    assert stopped.value.code == 143  # what service managers expect after SIGTERM
    assert not out.exists()
    assert not out.with_name(out.name + ".partial").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler restored
