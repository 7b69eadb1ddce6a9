"""superb_redundancy.analysis.blocks: exact block detection and the heat-map plot."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from superb_redundancy.analysis.blocks import block_fit_error, detect_blocks, plot_similarity


def planted(sizes: list[int], within: float = 0.9, between: float = 0.4, noise: float = 0.03, seed: int = 0):
    """A symmetric similarity matrix with contiguous blocks of the given sizes, a diagonal band and noise."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    m = np.where(labels[:, None] == labels[None, :], within, between)
    idx = np.arange(len(labels))
    m = m + 0.05 * np.exp(-np.abs(idx[:, None] - idx[None, :]))  # neighbours a bit more similar, as in Fig. 2a
    rng = np.random.default_rng(seed)
    e = rng.normal(scale=noise, size=m.shape)
    m = m + (e + e.T) / 2
    np.fill_diagonal(m, 1.0)
    return m


def expected(sizes: list[int]) -> list[tuple[int, int]]:
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e - 1)) for s, e in zip(sizes, ends)]


def naive_sse(m: np.ndarray, blocks) -> float:
    """The stated objective, tile by tile: off-diagonal squared deviation from each tile's mean."""
    total = 0.0
    for (a0, a1), (b0, b1) in itertools.product(blocks, blocks):
        vals = [m[i, j] for i in range(a0, a1 + 1) for j in range(b0, b1 + 1) if i != j]
        if vals:
            total += float(np.sum((np.array(vals) - np.mean(vals)) ** 2))
    return total


def all_partitions(size: int, n_blocks: int):
    for inner in itertools.combinations(range(1, size), n_blocks - 1):
        b = (0, *inner, size)
        yield [(b[i], b[i + 1] - 1) for i in range(n_blocks)]


@pytest.mark.parametrize("sizes", [[8, 5], [3, 10], [17, 8], [5, 4, 4], [12, 7, 6], [2, 9, 2]])
def test_recovers_planted_blocks_exactly(sizes):
    m = planted(sizes, seed=len(sizes) * 100 + sizes[0])
    assert detect_blocks(m, n_blocks=len(sizes)) == expected(sizes)


def test_default_is_two_blocks_like_the_paper():
    # wav2vec2-base-like CKA reading: block 1 = 0..7, block 2 = 8..12 (13 hidden states)
    assert detect_blocks(planted([8, 5])) == [(0, 7), (8, 12)]


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 4])
def test_matches_brute_force_on_random_matrices(n_blocks):
    rng = np.random.default_rng(n_blocks)
    a = rng.uniform(size=(9, 9))
    m = (a + a.T) / 2
    np.fill_diagonal(m, 1.0)
    got = detect_blocks(m, n_blocks)
    scores = {tuple(p): naive_sse(m, p) for p in all_partitions(9, n_blocks)}
    assert naive_sse(m, got) == pytest.approx(min(scores.values()), abs=1e-12)
    assert block_fit_error(m, got) == pytest.approx(naive_sse(m, got), abs=1e-12)


@pytest.mark.parametrize("size, n_blocks", [(1, 1), (5, 1), (5, 5), (13, 2), (25, 4)])
def test_blocks_are_contiguous_and_cover(size, n_blocks):
    rng = np.random.default_rng(size)
    a = rng.uniform(size=(size, size))
    blocks = detect_blocks((a + a.T) / 2, n_blocks)
    assert len(blocks) == n_blocks
    assert blocks[0][0] == 0 and blocks[-1][1] == size - 1
    for (s, e), (s2, _) in zip(blocks, blocks[1:] + [(size, None)]):
        assert s <= e and s2 == e + 1


def test_errors():
    m = planted([4, 4])
    with pytest.raises(ValueError, match="n_blocks"):
        detect_blocks(m, 0)
    with pytest.raises(ValueError, match="1..8"):
        detect_blocks(m, 9)
    with pytest.raises(ValueError, match="square"):
        detect_blocks(np.ones((3, 4)))
    with pytest.raises(ValueError, match="square"):
        detect_blocks(np.ones(4))
    bad = m.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detect_blocks(bad)
    with pytest.raises(ValueError, match="contiguous"):
        block_fit_error(m, [(0, 2), (4, 7)])


def test_plot_writes_atomically(tmp_path):
    mats = {"cosine": planted([8, 5], seed=1), "cka": planted([8, 5], seed=2), "knn": planted([8, 5], seed=3)}
    blocks = {name: detect_blocks(m) for name, m in mats.items()}
    out = plot_similarity(mats, blocks, tmp_path / "sub" / "fig.png", title="toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["fig.png"]  # no temp file left behind
    plot_similarity({"cka": mats["cka"]}, None, out)  # overwrite, no blocks
    assert [p.name for p in out.parent.iterdir()] == ["fig.png"]
    with pytest.raises(ValueError, match="knn"):
        plot_similarity({"cka": mats["cka"]}, {"knn": [(0, 12)]}, tmp_path / "x.png")


def test_permutations_that_reach_the_observed_partition_count_whatever_the_rounding():
    """A one-layer block (layers 0-6 | 7): every permutation that puts layer 7 at either end finds the same
    partition, so its strength ties the observed one up to the order of summation; each such tie counts, and
    nothing else reaches it. The p is then exactly (1 + those permutations) / (1 + permutations)."""
    from superb_redundancy.analysis.blocks import permutation_null

    rng = np.random.default_rng(3)
    m = 0.8 + 0.01 * rng.standard_normal((8, 8))
    m[7, :] = m[:, 7] = 0.1 + 0.01 * rng.standard_normal(8)
    m = (m + m.T) / 2
    np.fill_diagonal(m, 1.0)
    assert detect_blocks(m, 2) == [(0, 6), (7, 7)]
    draws = np.random.default_rng(0)
    at_an_end = sum(int(order[0] == 7 or order[-1] == 7) for order in (draws.permutation(8) for _ in range(200)))
    result = permutation_null(m, 2, permutations=200, seed=0)
    assert result["p"] == (1 + at_an_end) / 201
