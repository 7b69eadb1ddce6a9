"""superb_redundancy.analysis.similarity against a naive per-pair reference written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from superb_redundancy.analysis.similarity import METRICS, SimilarityAccumulator, pool, similarity_matrices

ATOL = 1e-10  # float64 vs float64 reference


# ------------------------------------------------------------------ naive reference (loops over pairs)
def _neighbour_sets(a: np.ndarray, k: int) -> list[set]:
    sets = []
    for s in range(a.shape[0]):
        sims = a @ a[s]
        sims[s] = -np.inf
        sets.append(set(np.argsort(-sims, kind="stable")[:k].tolist()))
    return sets


def naive(layers: list[np.ndarray], k: int = 8) -> dict[str, np.ndarray]:
    centred = [x - x.mean(axis=0) for x in layers]
    m = len(centred)
    n = centred[0].shape[0]
    out = {name: np.eye(m) for name in METRICS}
    nbrs = [_neighbour_sets(a, k) for a in centred]
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            a, b = centred[i], centred[j]
            out["cosine"][i, j] = np.mean(
                [a[s] @ b[s] / (np.linalg.norm(a[s]) * np.linalg.norm(b[s])) for s in range(n)]
            )
            out["cka"][i, j] = np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
            out["knn"][i, j] = np.mean([len(nbrs[i][s] & nbrs[j][s]) / k for s in range(n)])
    return out


def naive_batched(layers: list[np.ndarray], sizes: list[int], k: int = 8) -> dict[str, np.ndarray]:
    """Sample-weighted mean of the naive metrics over consecutive batches of the given sizes."""
    total = {name: 0.0 for name in METRICS}
    start = 0
    for size in sizes:
        batch = naive([x[start : start + size] for x in layers], k)
        for name in METRICS:
            total[name] = total[name] + size * batch[name]
        start += size
    assert start == layers[0].shape[0]
    return {name: total[name] / start for name in METRICS}


def make_layers(n: int, num_layers: int = 5, dim: int = 12, seed: int = 0) -> list[torch.Tensor]:
    """Layers that drift from a shared base, so the similarities are neither 0 nor 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) + 0.5  # offset: centring matters
    layers = [x]
    for _ in range(num_layers - 1):
        mix = torch.eye(dim, dtype=torch.float64) + 0.4 * torch.randn(dim, dim, generator=g, dtype=torch.float64)
        x = torch.tanh(x @ mix) + 0.3 * torch.randn(n, dim, generator=g, dtype=torch.float64)
        layers.append(x)
    return layers


def as_np(layers):
    return [x.numpy() for x in layers]


def feed(acc: SimilarityAccumulator, layers, chunk_sizes):
    start = 0
    for size in chunk_sizes:
        acc.update([x[start : start + size] for x in layers])
        start += size
    assert start == layers[0].shape[0]


def assert_close(got: dict, want: dict, atol: float = ATOL):
    for name in METRICS:
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0, err_msg=name)


# ------------------------------------------------------------------ definition
def test_whole_matches_naive_reference():
    layers = make_layers(60)
    assert_close(similarity_matrices(layers, k=8), naive(as_np(layers), k=8))
    acc = SimilarityAccumulator(k=8, averaging="whole")
    feed(acc, layers, [60])
    assert_close(acc.compute(), naive(as_np(layers), k=8))


def test_values_are_nontrivial():
    got = similarity_matrices(make_layers(60), k=8)
    for name in METRICS:
        off = got[name][~np.eye(5, dtype=bool)]
        assert 0.05 < off.min() and off.max() < 0.999, name


@pytest.mark.parametrize(
    "n, chunks, batches",
    [
        (96, [7, 40, 1, 48], [32, 32, 32]),  # full batches only
        (101, [50, 51], [32, 32, 37]),  # tail of 5 < k+1 merged into the last batch
        (116, [116], [32, 32, 32, 20]),  # tail of 20 >= k+1 is its own, lighter batch
        (20, [3, 17], [20]),  # fewer than one batch
    ],
)
def test_batch_mode_matches_naive_reference(n, chunks, batches):
    layers = make_layers(n, seed=n)
    acc = SimilarityAccumulator(k=8, averaging="batch", batch_size=32)
    feed(acc, layers, chunks)
    assert_close(acc.compute(), naive_batched(as_np(layers), batches, k=8))
    assert acc.compute()["cka"].shape == (5, 5)  # compute() does not consume state
    assert_close(acc.compute(), naive_batched(as_np(layers), batches, k=8))


def test_diagonal_one_and_symmetric():
    layers = make_layers(80, num_layers=6)
    for averaging in ("batch", "whole"):
        acc = SimilarityAccumulator(k=8, averaging=averaging, batch_size=32)
        feed(acc, layers, [80])
        for name, m in acc.compute().items():
            assert m.shape == (6, 6)
            np.testing.assert_array_equal(np.diag(m), np.ones(6), err_msg=name)
            np.testing.assert_array_equal(m, m.T, err_msg=name)


def test_streamed_chunks_equal_one_update():
    layers = make_layers(150)
    for averaging in ("whole", "batch"):
        one = SimilarityAccumulator(averaging=averaging, batch_size=32)
        one.update(layers)
        many = SimilarityAccumulator(averaging=averaging, batch_size=32)
        feed(many, layers, [1, 9, 30, 33, 2, 64, 11])
        assert_close(many.compute(), one.compute(), atol=1e-12)


def test_stacked_tensor_input_equals_list():
    layers = make_layers(40)
    assert_close(similarity_matrices(torch.stack(layers)), similarity_matrices(layers), atol=0)


# ------------------------------------------------------------------ invariances
def _orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.mark.parametrize("averaging", ["whole", "batch"])
def test_cka_and_knn_invariant_to_orthogonal_and_scaling_of_one_layer(averaging):
    layers = make_layers(96)
    changed = list(layers)
    changed[2] = layers[2] @ _orthogonal(12, seed=3)
    changed[4] = 3.7 * layers[4]

    def run(ls):
        acc = SimilarityAccumulator(k=8, averaging=averaging, batch_size=32)
        acc.update(ls)
        return acc.compute()

    base, moved = run(layers), run(changed)
    np.testing.assert_allclose(moved["cka"], base["cka"], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(moved["knn"], base["knn"])  # random data: no near-ties in the rankings
    # cosine is only invariant to a per-sample positive scale, e.g. the isotropic one of layer 4
    # (its pair with the rotated layer 2 changes)
    np.testing.assert_allclose(moved["cosine"][4, [0, 1, 3]], base["cosine"][4, [0, 1, 3]], atol=1e-12, rtol=0)


# ------------------------------------------------------------------ degenerate inputs
def test_zero_vectors_never_give_nan():
    layers = make_layers(40)
    layers[1] = torch.zeros_like(layers[1])  # an all-zero layer
    layers[3] = layers[3].clone()
    layers[3][:5] = 0.0  # some zero rows (non-zero after centring)
    layers[4] = layers[4].clone()
    layers[4][:] = layers[4][0]  # identical rows: exactly zero after centring
    for averaging in ("whole", "batch"):
        acc = SimilarityAccumulator(k=8, averaging=averaging, batch_size=16)
        acc.update(layers)
        got = acc.compute()
        for name, m in got.items():
            assert np.isfinite(m).all(), name
            np.testing.assert_array_equal(np.diag(m), np.ones(5), err_msg=name)
        for zero_layer in (1, 4):
            off = np.delete(got["cka"][zero_layer], zero_layer)
            np.testing.assert_array_equal(off, 0.0)
            np.testing.assert_array_equal(np.delete(got["cosine"][zero_layer], zero_layer), 0.0)


def test_silent_clips_pool_without_nan():
    hidden = torch.randn(12, 7, 4)
    hidden[:3] = 0.0
    lengths = torch.tensor([0, 7, 7] + [7] * 9)
    pooled = pool(hidden, lengths, "mean")
    assert torch.isfinite(pooled).all() and (pooled[:3] == 0).all()
    got = similarity_matrices([pooled, torch.zeros_like(pooled), pooled * 2], k=4)
    assert all(np.isfinite(m).all() for m in got.values())


def test_float32_input_is_handled():
    layers = [x.float() for x in make_layers(40)]
    assert_close(similarity_matrices(layers), naive([x.double().numpy() for x in layers]), atol=1e-10)


@pytest.mark.parametrize("averaging", ["whole", "batch"])
def test_fewer_samples_than_k_plus_one_raises(averaging):
    layers = make_layers(8)
    with pytest.raises(ValueError, match=r"k\+1=9.*n=8|n=8.*k=8"):
        similarity_matrices(layers, k=8)
    acc = SimilarityAccumulator(k=8, averaging=averaging, batch_size=32)
    acc.update(layers)
    with pytest.raises(ValueError, match="n=8"):
        acc.compute()


def test_accumulator_rejects_bad_input():
    with pytest.raises(ValueError, match="averaging"):
        SimilarityAccumulator(averaging="mean")
    with pytest.raises(ValueError, match="batch_size"):
        SimilarityAccumulator(k=8, batch_size=8)
    acc = SimilarityAccumulator()
    with pytest.raises(ValueError, match="no samples"):
        acc.compute()
    with pytest.raises(ValueError, match="same"):
        acc.update([torch.zeros(10, 3), torch.zeros(11, 3)])
    acc.update([torch.randn(10, 3)] * 2)
    with pytest.raises(ValueError, match="layers"):
        acc.update([torch.randn(10, 3)] * 3)


def test_whole_mode_keeps_first_max_samples():
    layers = make_layers(70)
    acc = SimilarityAccumulator(averaging="whole", max_samples=50)
    with pytest.warns(UserWarning, match="max_samples=50"):
        feed(acc, layers, [30, 30, 10])
    assert acc.num_samples == 70
    assert_close(acc.compute(), similarity_matrices([x[:50] for x in layers]), atol=0)


# ------------------------------------------------------------------ pooling
def test_pool_mean_uses_valid_frames_only():
    hidden = torch.randn(3, 5, 2)
    lengths = torch.tensor([5, 2, 3])
    got = pool(hidden, lengths)  # "mean" is the default
    want = torch.stack([hidden[b, :n].mean(0) for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(got, want)


def test_pool_flatten_and_frames():
    hidden = torch.randn(3, 5, 2)
    torch.testing.assert_close(pool(hidden, torch.tensor([4, 4, 4]), "flatten"), hidden[:, :4].reshape(3, 8))
    assert pool(hidden, None, "flatten").shape == (3, 10)
    frames = pool(hidden, torch.tensor([5, 1, 3]), "frames")
    torch.testing.assert_close(frames, torch.cat([hidden[0], hidden[1, :1], hidden[2, :3]]))


def test_pool_errors():
    hidden = torch.randn(3, 5, 2)
    with pytest.raises(ValueError, match=r"\[5, 2, 3\]"):
        pool(hidden, torch.tensor([5, 2, 3]), "flatten")
    with pytest.raises(ValueError, match=r"'max'.*mean.*flatten.*frames"):
        pool(hidden, None, "max")
    with pytest.raises(ValueError, match="0..5"):
        pool(hidden, torch.tensor([6, 1, 1]))


# ------------------------------------------------------------------ two models (rows against columns)
CROSS_ATOL = 1e-10  # streaming float64 against the non-streaming numpy reference below
SELF_ATOL = 1e-12  # a model against itself: its own matrices up to float rounding (the diagonal is 1 by fiat there)


def naive_cross(rows: list[np.ndarray], cols: list[np.ndarray], k: int = 8) -> dict[str, np.ndarray]:
    """Every layer of ``rows`` against every layer of ``cols`` by the definitions, pair by pair, nothing fixed."""
    a_c = [x - x.mean(axis=0) for x in rows]
    b_c = [x - x.mean(axis=0) for x in cols]
    n = a_c[0].shape[0]
    na, nb = [_neighbour_sets(a, k) for a in a_c], [_neighbour_sets(b, k) for b in b_c]
    out = {name: np.zeros((len(rows), len(cols))) for name in METRICS}
    for i, a in enumerate(a_c):
        for j, b in enumerate(b_c):
            if a.shape[1] == b.shape[1]:
                out["cosine"][i, j] = np.mean(
                    [a[s] @ b[s] / (np.linalg.norm(a[s]) * np.linalg.norm(b[s])) for s in range(n)])
            out["cka"][i, j] = np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
            out["knn"][i, j] = np.mean([len(na[i][s] & nb[j][s]) / k for s in range(n)])
    return out


def test_cross_matches_naive_reference_with_different_layer_counts():
    rows = make_layers(60, num_layers=3, seed=1)  # e.g. a mimicker: input + 2 layers
    cols = make_layers(60, num_layers=5, seed=2)  # e.g. its teacher: input + 4 layers
    got = similarity_matrices(rows, k=8, against=cols)
    assert got["cka"].shape == (3, 5)
    assert_close(got, naive_cross(as_np(rows), as_np(cols)), atol=CROSS_ATOL)
    acc = SimilarityAccumulator(k=8, averaging="whole")
    for start, size in ((0, 25), (25, 35)):
        acc.update([x[start:start + size] for x in rows], [x[start:start + size] for x in cols])
    assert_close(acc.compute(), naive_cross(as_np(rows), as_np(cols)), atol=CROSS_ATOL)


@pytest.mark.parametrize("n, chunks, batches", [(101, [50, 51], [32, 32, 37]), (116, [7, 109], [32, 32, 32, 20])])
def test_cross_batch_mode_matches_naive_reference(n, chunks, batches):
    rows, cols = make_layers(n, num_layers=2, seed=3), make_layers(n, num_layers=4, seed=4)
    acc = SimilarityAccumulator(k=8, averaging="batch", batch_size=32)
    start = 0
    for size in chunks:
        acc.update([x[start:start + size] for x in rows], [x[start:start + size] for x in cols])
        start += size
    want, begin = {name: 0.0 for name in METRICS}, 0
    for size in batches:  # the same regrouping as the one-model case, applied to both sides
        part = naive_cross([x[begin:begin + size] for x in as_np(rows)], [x[begin:begin + size] for x in as_np(cols)])
        want = {name: want[name] + size * part[name] for name in METRICS}
        begin += size
    assert_close(acc.compute(), {name: want[name] / n for name in METRICS}, atol=CROSS_ATOL)


def test_cross_of_a_model_against_itself_is_its_own_matrices():
    layers = make_layers(150, num_layers=6)
    copy = [x.clone() for x in layers]
    for averaging in ("whole", "batch"):
        own, cross = (SimilarityAccumulator(averaging=averaging, batch_size=32) for _ in range(2))
        feed(own, layers, [40, 60, 50])
        for start, size in ((0, 40), (40, 60), (100, 50)):
            cross.update([x[start:start + size] for x in layers], [x[start:start + size] for x in copy])
        assert_close(cross.compute(), own.compute(), atol=SELF_ATOL)


def test_cross_without_cosine_when_widths_differ():
    rows = make_layers(50, num_layers=2, dim=12, seed=5)
    cols = make_layers(50, num_layers=3, dim=7, seed=6)
    got = similarity_matrices(rows, against=cols)
    assert set(got) == {"cka", "knn"} and got["knn"].shape == (2, 3)
    want = naive_cross(as_np(rows), as_np(cols))
    for name in got:
        np.testing.assert_allclose(got[name], want[name], atol=CROSS_ATOL, rtol=0, err_msg=name)


def test_cross_rejects_mismatched_input():
    rows, cols = make_layers(30, num_layers=2), make_layers(30, num_layers=3)
    with pytest.raises(ValueError, match="same samples: got 30 and 29"):
        similarity_matrices(rows, against=[x[:29] for x in cols])
    acc = SimilarityAccumulator(k=4, batch_size=16)
    acc.update(rows, cols)
    with pytest.raises(ValueError, match="on every update or on none"):
        acc.update(rows)
    with pytest.raises(ValueError, match="expected 2 layers of dim 12 and 3 layers of dim 12 as before"):
        acc.update(rows, cols[:2])
