"""The streaming safetensors reader/writer against the official library, and bf16."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from genguard.merge.safetensors_io import (
    OutputTensor,
    SafetensorsFormatError,
    SafetensorsReader,
    SafetensorsWriter,
    bf16_to_f32,
    f32_to_bf16,
    save_arrays,
)


def test_reader_reads_files_of_the_official_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    state = {
        "a.f16": rng.standard_normal((3, 5)).astype(np.float16),
        "b.f32": rng.standard_normal((7,)).astype(np.float32),
        "c.i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "d.scalar": np.array(2.5, dtype=np.float32),
    }
    save_file(state, str(tmp_path / "x.safetensors"), metadata={"k": "v"})
    with SafetensorsReader(tmp_path / "x.safetensors") as r:
        assert r.metadata == {"k": "v"}
        assert set(r.tensors) == set(state)
        for key, value in state.items():
            np.testing.assert_array_equal(r.read_raw(key), value)
        assert r.tensors["a.f16"].is_float and not r.tensors["c.i64"].is_float
        np.testing.assert_array_equal(r.read_float32("a.f16"), state["a.f16"].astype(np.float32))


def test_writer_output_loads_with_the_official_library(tmp_path: Path) -> None:
    arrays = {
        "w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        "ids": np.arange(5, dtype=np.int64),
    }
    path = save_arrays(tmp_path / "y.safetensors", arrays, {"w": "F16"}, {"recipe": "r"})
    loaded = load_file(str(path))
    np.testing.assert_array_equal(loaded["w"], arrays["w"].astype(np.float16))
    np.testing.assert_array_equal(loaded["ids"], arrays["ids"])
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"recipe": "r"}
    assert not list(tmp_path.glob("*.partial"))


def test_writer_rewrites_metadata_into_reserved_space(tmp_path: Path) -> None:
    entries = [OutputTensor("t", "F32", (2,))]
    w = SafetensorsWriter(tmp_path / "z.safetensors", entries, {"sha": "0" * 64})
    w.write("t", np.array([1.0, 2.0], np.float32))
    w.finish({"sha": "ab" * 32, "extra": "x" * 100})
    with safe_open(str(tmp_path / "z.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"sha": "ab" * 32, "extra": "x" * 100}
        np.testing.assert_array_equal(f.get_tensor("t"), [1.0, 2.0])
    header_len = struct.unpack("<Q", (tmp_path / "z.safetensors").read_bytes()[:8])[0]
    assert header_len % 8 == 0  # keeps tensor data aligned


def test_writer_refuses_out_of_order_and_cleans_up_on_abort(tmp_path: Path) -> None:
    entries = [OutputTensor("a", "F32", (1,)), OutputTensor("b", "F32", (1,))]
    w = SafetensorsWriter(tmp_path / "o.safetensors", entries)
    with pytest.raises(RuntimeError, match="out of order"):
        w.write("b", np.zeros(1, np.float32))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_bf16_known_values() -> None:
    exact = np.array([0.0, 1.0, -2.0, 1.5, 0.0078125, 3.0e38], np.float32)
    assert np.array_equal(bf16_to_f32(f32_to_bf16(exact))[:5], exact[:5])
    # bf16 has 8 significant bits: 1 + 2**-8 is a tie between 1 and 1 + 2**-7 -> even (1.0)
    ties = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-12], np.float32)
    np.testing.assert_array_equal(bf16_to_f32(f32_to_bf16(ties)), [1.0, 1 + 2**-6, 1 + 2**-7])
    assert f32_to_bf16(np.array([1.0], np.float32))[0] == 0x3F80  # IEEE bit pattern
    assert np.isnan(bf16_to_f32(f32_to_bf16(np.array([np.nan], np.float32))))[0]


@pytest.mark.slow  # imports torch (~3 s)
def test_bf16_files_agree_with_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file as torch_load
    from safetensors.torch import save_file as torch_save

    values = torch.randn(4, 6)
    torch_save({"t": values.to(torch.bfloat16)}, str(tmp_path / "t.safetensors"))
    with SafetensorsReader(tmp_path / "t.safetensors") as r:
        ours = r.read_float32("t")
    np.testing.assert_array_equal(ours, values.to(torch.bfloat16).float().numpy())
    save_arrays(tmp_path / "o.safetensors", {"t": values.numpy()}, {"t": "BF16"})
    back = torch_load(str(tmp_path / "o.safetensors"))["t"]
    assert back.dtype == torch.bfloat16
    assert torch.equal(back, values.to(torch.bfloat16))  # same rounding as torch


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04" + b"\x00" * 64, "zip archive"),
        (b"\x80\x02}q\x00(X" + b"\x00" * 64, "pickle"),
        (b"hello, I am a text file and not a checkpoint", "not a safetensors file"),
        (b"\x01", "not a safetensors file"),
    ],
)
def test_non_safetensors_inputs_are_explained(tmp_path: Path, content: bytes, message) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(SafetensorsFormatError, match=message):
        SafetensorsReader(path)


def test_truncated_and_malformed_files(tmp_path: Path) -> None:
    save_file({"w": np.ones((64, 64), np.float32)}, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(SafetensorsFormatError, match="truncated"):
        SafetensorsReader(tmp_path / "cut.safetensors")
    header = json.dumps({"w": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 1]}}).encode()
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    with pytest.raises(SafetensorsFormatError, match="unknown dtype Q99"):
        SafetensorsReader(tmp_path / "bad.safetensors")
    with pytest.raises(SafetensorsFormatError, match="no such file"):
        SafetensorsReader(tmp_path / "absent.safetensors")


def _crafted(tmp_path: Path, header: dict | bytes, data: bytes = bytes(16)) -> Path:
    """A hand-made file: 8-byte little-endian header length, JSON header, data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _entry(shape, offsets=(0, 16), dtype="F32") -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": list(offsets)}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"w": _entry([-2, -2])}, r"'w'.*negative"),
        ({"w": _entry([4, -1], (0, 0))}, r"'w'.*negative"),
        ({"w": _entry([2.0, 2])}, r"'w'.*integer"),
        ({"w": _entry([True, 4])}, r"'w'.*integer"),
        ({"w": _entry("4")}, r"'w'.*list"),
        ({"w": _entry([2**32, 2**32, 2**32, 2**32], (0, 0), "U8")}, r"'w'.*inconsistent"),
        ({"w": _entry([2**62, 4], (0, 0))}, r"'w'.*inconsistent"),
        ({"w": _entry([4], (0.0, 16))}, r"'w'.*data_offsets"),
        ({"w": _entry([4], (0, 16, 32))}, r"'w'.*data_offsets"),
        ({"a": _entry([4]), "b": _entry([2], (8, 16))}, r"'[ab]' and '[ab]' have overlapping"),
        ({"a": _entry([2], (8, 16)), "b": _entry([4])}, r"'[ab]' and '[ab]' have overlapping"),
        ({"a": _entry([2], (0, 8)), "b": _entry([1], (12, 16))}, r"4 bytes between .* no tensor"),
        ({"w": _entry([2], (0, 8))}, r"8 bytes after the last tensor"),
        ({"w": _entry([2], (8, 16))}, r"8 bytes before the first tensor"),
        (
            b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, '
            b'"w": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]}}',
            r"names 'w' twice",
        ),
        ({"__metadata__": ["x"], "w": _entry([4])}, r"__metadata__.*object"),
        ({"__metadata__": "x", "w": _entry([4])}, r"__metadata__.*object"),
        ({"__metadata__": {"n": 1}, "w": _entry([4])}, r"__metadata__.*'n'.*string"),
        ({"__metadata__": {"n": {"deep": "x"}}, "w": _entry([4])}, r"__metadata__.*'n'.*string"),
        ({"w": [1, 2, 3]}, r"malformed header entry 'w'"),
        (b"[" * 100_000 + b"]" * 100_000, r"nested too deeply"),
        (b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"nested too deeply"),
    ],
)
def test_crafted_headers_fail_with_one_line(tmp_path: Path, header, message: str) -> None:
    path = _crafted(tmp_path, header)
    with pytest.raises(SafetensorsFormatError, match=message) as info:
        SafetensorsReader(path)
    assert "crafted.safetensors" in str(info.value) and "\n" not in str(info.value)


def test_adjacent_and_empty_tensors_are_fine(tmp_path: Path) -> None:
    header = {"__metadata__": {"format": "pt"}, "a": _entry([2], (0, 8)), "b": _entry([2], (8, 16))}
    header["e"] = _entry([0, 3], (16, 16))
    with SafetensorsReader(_crafted(tmp_path, header)) as r:
        assert r.metadata == {"format": "pt"} and r.read_raw("e").shape == (0, 3)
