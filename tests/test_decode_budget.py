"""Decode budgets and cooperative cancellation: small files never buy minutes of work."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from genguard.cancel import Cancelled, cancellable, checkpoint
from genguard.content import LoadLimits, decode_bytes, load_image
from genguard.errors import ContentError
from genguard.guard import Guard
from genguard.policy import load_policy
from tests.conftest import FakeDetector
from tests.hostile import gif_bomb


def animated(fmt: str, frames: int, size: tuple[int, int] = (64, 48)) -> bytes:
    pictures = [Image.new("RGB", size, (i * 5 % 256, 80, 120)) for i in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format=fmt, save_all=True, append_images=pictures[1:])
    return buffer.getvalue()


def test_the_bomb_is_a_real_gif_that_pillow_reads() -> None:
    """The fixture is what it claims: a valid GIF of many frames on a large canvas."""
    image = Image.open(io.BytesIO(gif_bomb(640, 480, 12)))
    assert (image.format, image.size, image.n_frames) == ("GIF", (640, 480), 12)
    assert len(gif_bomb(8000, 8000, 1000)) < 24_000


def test_a_23_kb_gif_asking_for_64_gigapixels_is_refused_from_the_header() -> None:
    with pytest.raises(ContentError) as caught:
        decode_bytes(gif_bomb(8000, 8000, 1000))
    assert caught.value.code == "too_many_pixels"
    assert "1000 frames of 8000x8000" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sequential_formats_count_every_frame_before_the_last_sampled() -> None:
    data = animated("GIF", 40)
    canvas = 64 * 48
    # 16 sampled frames, but the last sampled one is frame 39: 40 canvases decoded.
    with pytest.raises(ContentError, match="decode budget"):
        decode_bytes(data, LoadLimits(max_decode_pixels=39 * canvas))
    loaded = decode_bytes(data, LoadLimits(max_decode_pixels=40 * canvas))
    assert len(loaded.frames) == 16 and loaded.n_frames_total == 40


def test_random_access_pages_count_only_the_sampled_ones() -> None:
    data = animated("TIFF", 40)
    canvas = 64 * 48
    loaded = decode_bytes(data, LoadLimits(max_decode_pixels=16 * canvas))
    assert len(loaded.frames) == 16
    with pytest.raises(ContentError, match="decode budget"):
        decode_bytes(data, LoadLimits(max_decode_pixels=15 * canvas))


def test_ordinary_images_are_untouched_by_the_budget() -> None:
    still = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(still, format="PNG", compress_level=1)
    limits = LoadLimits(analysis_side=640)  # as the Guard loads: 12 MP in, 640 px out
    assert decode_bytes(still.getvalue(), limits).full_size == (4000, 3000)
    # 120 frames of 512x512 (31 MP decoded) is an ordinary animation: well under budget.
    frames = [Image.new("P", (512, 512), i % 200) for i in range(120)]  # no quantising
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    assert len(decode_bytes(gif.getvalue(), limits).frames) == 16


def test_checkpoint_raises_only_inside_an_abandoned_scope() -> None:
    checkpoint()  # outside any scope: nothing to cancel
    abandoned = threading.Event()
    with cancellable(abandoned.is_set):
        checkpoint()
        abandoned.set()
        with pytest.raises(Cancelled):
            checkpoint()
    checkpoint()  # the scope is gone again


def test_decoding_stops_between_frames_once_abandoned() -> None:
    with cancellable(lambda: True), pytest.raises(Cancelled):
        decode_bytes(animated("GIF", 8))
    assert len(decode_bytes(animated("GIF", 8)).frames) == 8


def test_detection_stops_between_batches_once_abandoned() -> None:
    detector = FakeDetector()
    guard = Guard(load_policy("standard"), [detector], batch_size=2)
    frames = [load_image(np.full((8, 8, 3), 100, np.uint8)) for _ in range(6)]
    calls = iter([False, False, True])
    with cancellable(lambda: next(calls, True)), pytest.raises(Cancelled):
        guard.check_loaded(frames)
    assert detector.calls == [2, 2]  # the third batch never ran


def test_decode_memory_lets_canvases_in_only_while_they_fit() -> None:
    from genguard.content import DecodeMemory

    memory = DecodeMemory(1000)
    order: list[str] = []
    first_in = threading.Event()
    release_first = threading.Event()

    def first() -> None:
        with memory.hold(800):
            order.append("first in")
            first_in.set()
            release_first.wait(5)
            order.append("first out")

    def second() -> None:
        first_in.wait(5)
        with memory.hold(800):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_in.wait(5)
    threading.Event().wait(0.2)  # the second decode is waiting for room
    assert order == ["first in"] and memory.in_use == 800
    release_first.set()
    for thread in threads:
        thread.join(5)
    assert order == ["first in", "first out", "second in"] and memory.in_use == 0
    with memory.hold(5000):  # larger than the whole bound: decodes alone, never deadlocks
        assert memory.in_use == 1000


def test_waiting_for_decode_memory_honours_cancellation() -> None:
    from genguard.content import DecodeMemory

    memory = DecodeMemory(100)
    with memory.hold(100), cancellable(lambda: True), pytest.raises(Cancelled):
        memory.hold(50).__enter__()  # waits for room that never comes, until cancelled
    assert memory.in_use == 0


def test_decoding_holds_its_canvas_in_the_process_bound(monkeypatch) -> None:
    from genguard import content

    memory = content.DecodeMemory(10**6)
    monkeypatch.setattr(content, "_decode_memory", memory)
    seen: list[int] = []
    original = content._decode_frames

    def spy(img, limits):
        seen.append(memory.in_use)
        return original(img, limits)

    monkeypatch.setattr(content, "_decode_frames", spy)
    decode_bytes(animated("GIF", 3, (64, 48)))
    assert seen == [64 * 48] and memory.in_use == 0
