"""Multi-index hashing: exact range search up to radius 31, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from genguard.provenance.mih import MAX_RADIUS, MultiIndex


def brute(codes: np.ndarray, query: np.ndarray, radius: int) -> dict[int, int]:
    dist = np.unpackbits(codes ^ query, axis=1).sum(axis=1)
    return {int(row): int(dist[row]) for row in np.nonzero(dist <= radius)[0]}


def flip(code: np.ndarray, bits: list[int]) -> np.ndarray:
    out = code.copy()
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return out


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    rng = np.random.default_rng(7)
    random = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    # Real banks are not uniform: many near-copies of a few images crowd some buckets.
    base = random[:50]
    crowd = np.stack(
        [flip(base[i % 50], list(rng.choice(256, 6, replace=False))) for i in range(3000)]
    )
    return np.concatenate([random, crowd])


def test_matches_brute_force_at_the_pigeonhole_edges(codes: np.ndarray) -> None:
    index = MultiIndex(codes)
    target = codes[123]
    cases = {
        # one bit in every 16-bit chunk: no chunk matches exactly (16 bits away)
        "one per chunk": flip(target, [16 * j for j in range(16)]),
        # two bits in 15 chunks, one in the last: 31 bits, only a one-flip probe finds it
        "31 spread": flip(target, [16 * j + k for j in range(15) for k in (0, 1)] + [16 * 15]),
        "15 in one chunk": flip(target, list(range(15))),
        "random query": np.random.default_rng(1).integers(0, 256, 32, dtype=np.uint8),
        "crowded bucket": codes[20_000],
    }
    for name, query in cases.items():
        for radius in (0, 15, 16, 31):
            distances, rows = index.range_search(query, radius)
            found = dict(zip(rows.tolist(), distances.tolist(), strict=True))
            assert found == brute(codes, query, radius), (name, radius)
            assert len(rows) == len(set(rows.tolist()))  # each row once
    assert 123 in dict(zip(*index.range_search(cases["31 spread"], 31)[::-1], strict=True))


def test_radius_above_the_exact_limit_is_refused(codes: np.ndarray) -> None:
    with pytest.raises(ValueError, match="radius"):
        MultiIndex(codes[:10]).range_search(codes[0], MAX_RADIUS + 1)


def test_empty_and_badly_shaped_inputs() -> None:
    empty = MultiIndex(np.zeros((0, 32), np.uint8))
    distances, rows = empty.range_search(np.zeros(32, np.uint8), 31)
    assert distances.size == rows.size == 0
    with pytest.raises(ValueError, match="N x 32"):
        MultiIndex(np.zeros((4, 16), np.uint8))


def test_memory_is_64_bytes_per_hash(codes: np.ndarray) -> None:
    index = MultiIndex(codes)
    assert index.nbytes <= 64 * len(index) + 16 * 65_537 * 8
