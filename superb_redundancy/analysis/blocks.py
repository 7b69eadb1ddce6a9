"""Automatic detection of contiguous similarity blocks (paper Fig. 2a: "two main blocks") and their plot.

A block structure is a partition of the layer indices ``0 .. M-1`` into ``n_blocks`` contiguous runs. The
best one is the partition whose block-constant approximation of the similarity matrix has the least squared
error: every tile (block a x block b, between-block tiles included) is replaced by its mean, the diagonal
(always 1, no information) left out. The search is exhaustive over the ``C(M-1, n_blocks-1)`` boundary sets,
so the answer is exact, not greedy; ties go to the lexicographically first boundaries.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from superb_redundancy.core.errors import UserError

__all__ = ["detect_blocks", "block_fit_error", "block_strength", "permutation_null", "plot_similarity",
           "MAX_CANDIDATES", "VMIN", "VMAX"]

#: exhaustive search refuses more boundary sets than this (M = 25 with 5 blocks is 10,626)
MAX_CANDIDATES = 2_000_000

_TITLES = {"cosine": "Cosine", "cka": "Linear CKA", "knn": "Mutual kNN"}


def _as_square(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square similarity matrix, got shape {m.shape}")
    if m.shape[0] == 0:
        raise ValueError("got an empty similarity matrix")
    if not np.isfinite(m).all():
        raise ValueError("the similarity matrix has NaN or infinite entries")
    return m


def _as_matrix(matrix) -> np.ndarray:
    """A finite 2-D matrix, square or not (one model's layers against another's)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"expected a non-empty 2-D similarity matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the similarity matrix has NaN or infinite entries")
    return m


def _prefix(a: np.ndarray) -> np.ndarray:
    """2-D inclusive prefix sums padded with a zero row and column, so tile sums are 4 look-ups."""
    p = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    p[1:, 1:] = a.cumsum(0).cumsum(1)
    return p


def _tile(p: np.ndarray, r0, r1, c0, c1):
    """Sum over rows r0..r1-1 and columns c0..c1-1 (vectorised over arrays of bounds)."""
    return p[r1, c1] - p[r0, c1] - p[r1, c0] + p[r0, c0]


def _sse_for_bounds(m: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Squared error of the block-constant fit for each row of ``bounds`` ``[C, n_blocks + 1]``."""
    weight = 1.0 - np.eye(m.shape[0])  # the diagonal is left out of every tile
    p_w, p_s, p_ss = _prefix(weight), _prefix(weight * m), _prefix(weight * m * m)
    sse = np.zeros(bounds.shape[0])
    n_blocks = bounds.shape[1] - 1
    for a in range(n_blocks):
        for b in range(n_blocks):
            r0, r1, c0, c1 = bounds[:, a], bounds[:, a + 1], bounds[:, b], bounds[:, b + 1]
            count = _tile(p_w, r0, r1, c0, c1)
            total = _tile(p_s, r0, r1, c0, c1)
            # within-tile variance times count: sum(x^2) - (sum x)^2 / count; an empty tile (a 1x1 diagonal) adds 0
            sse += _tile(p_ss, r0, r1, c0, c1) - np.divide(
                total * total, count, out=np.zeros_like(total), where=count > 0
            )
    return sse


def _blocks_to_bounds(blocks: Sequence[tuple[int, int]], size: int) -> np.ndarray:
    starts = [int(s) for s, _ in blocks]
    ends = [int(e) for _, e in blocks]
    if not blocks or starts[0] != 0 or ends[-1] != size - 1 or any(
        e < s or nxt != e + 1 for s, e, nxt in zip(starts, ends, starts[1:] + [size])
    ):
        raise ValueError(f"blocks {list(blocks)} are not contiguous (start, end_inclusive) runs covering 0..{size - 1}")
    return np.array([starts + [size]])


def block_fit_error(matrix, blocks: Sequence[tuple[int, int]]) -> float:
    """The objective :func:`detect_blocks` minimises, for a given partition (lower is better)."""
    m = _as_square(matrix)
    return float(_sse_for_bounds(m, _blocks_to_bounds(blocks, m.shape[0]))[0])


def detect_blocks(matrix, n_blocks: int = 2) -> list[tuple[int, int]]:
    """The contiguous partition of ``0 .. M-1`` into ``n_blocks`` blocks that best fits ``matrix``.

    Returns ``[(start, end_inclusive), ...]`` in order. Exact: every boundary set is scored (see module doc).
    """
    m = _as_square(matrix)
    size = m.shape[0]
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)):
        raise UserError(f"n_blocks must be an int, got {n_blocks!r}")
    if not 1 <= n_blocks <= size:
        raise UserError(f"n_blocks must lie in 1..{size} for a {size}x{size} matrix, got {n_blocks}")
    n_candidates = math.comb(size - 1, n_blocks - 1)
    if n_candidates > MAX_CANDIDATES:
        raise UserError(
            f"{n_candidates} boundary sets for {n_blocks} blocks of {size} layers exceed the exhaustive-search "
            f"limit of {MAX_CANDIDATES}; ask for fewer blocks"
        )
    # a boundary b means a block starts at b; combinations() yields them in lexicographic order
    inner = np.array(list(itertools.combinations(range(1, size), n_blocks - 1)), dtype=np.int64)
    inner = inner.reshape(n_candidates, n_blocks - 1)
    bounds = np.concatenate(
        [np.zeros((n_candidates, 1), np.int64), inner, np.full((n_candidates, 1), size, np.int64)], axis=1
    )
    best = bounds[int(np.argmin(_sse_for_bounds(m, bounds)))]  # argmin: first of equal minima
    return [(int(best[i]), int(best[i + 1]) - 1) for i in range(n_blocks)]


def block_strength(matrix, blocks: Sequence[tuple[int, int]]) -> dict:
    """How strong a partition is: mean similarity within blocks and between blocks (diagonal left out).

    ``strength = within - between``; 0 when the blocks say nothing, up to 1 for perfectly separated blocks.
    """
    m = _as_square(matrix)
    bounds = _blocks_to_bounds(blocks, m.shape[0])[0]
    label = np.zeros(m.shape[0], dtype=int)
    for k in range(len(bounds) - 1):
        label[bounds[k]:bounds[k + 1]] = k
    same = label[:, None] == label[None, :]
    off = ~np.eye(m.shape[0], dtype=bool)
    within = float(m[same & off].mean()) if (same & off).any() else float("nan")
    between = float(m[~same].mean()) if (~same).any() else float("nan")
    return {"within": within, "between": between, "strength": within - between}


#: strengths this close are the same partition summed in another order: a permutation that only relabels the
#: layers inside a block (or moves a one-layer block to the other end) reaches the observed strength exactly, and
#: float rounding must not decide whether it counts (it moved a CKA p between 0.16 and 0.22; counted: 0.25)
_TIE = 1e-9


def permutation_null(matrix, n_blocks: int = 2, permutations: int = 1000, seed: int = 0) -> dict:
    """The strength of the best contiguous partition when the layer order carries no information.

    Each permutation relabels the layers at random (rows and columns alike), the best ``n_blocks`` partition of
    the permuted matrix is found, and its strength kept. ``p`` is the share of permutations whose best strength
    reaches the observed one, ties included (with the observed one counted, so p >= 1 / (permutations + 1)).
    """
    m = _as_square(matrix)
    observed = block_strength(m, detect_blocks(m, n_blocks))["strength"]
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(permutations):
        order = rng.permutation(m.shape[0])
        shuffled = m[np.ix_(order, order)]
        null.append(block_strength(shuffled, detect_blocks(shuffled, n_blocks))["strength"])
    null = np.asarray(null)
    return {"observed": observed, "null_mean": float(null.mean()), "null_q95": float(np.quantile(null, 0.95)),
            "p": float((1 + (null >= observed - _TIE).sum()) / (1 + permutations)), "permutations": permutations}


#: the colour scale of every heat map: the paper's colour bars run 0.5..1 for all three metrics
VMIN, VMAX = 0.5, 1.0


def plot_similarity(
    matrices: Mapping[str, np.ndarray],
    blocks: Optional[Mapping[str, Sequence[tuple[int, int]]]],
    path: str | os.PathLike,
    title: Optional[str] = None,
    first_index: int = 0,
    axis_label: str | tuple[str, str] = "layer",
    notes: Optional[Mapping[str, str]] = None,
) -> Path:
    """One heat-map panel per metric (like the paper's Fig. 2a), blocks drawn as rectangles; atomic write.

    ``blocks`` maps a metric name to its ``(start, end_inclusive)`` list; metrics it omits get no rectangles
    and may be non-square (one model's hidden states against another's): ``axis_label`` is then the pair
    ``(rows' label, columns' label)``, rows drawn up the y axis, columns along the x axis.
    The file format follows the suffix of ``path`` (png if none). Every panel uses the same colour scale,
    :data:`VMIN`..:data:`VMAX` (lower values show as the lowest colour; the colour bar's arrow says so).
    ``first_index``: the label of row 0 (blocks are given in these labels); ``notes``: a line under each panel.
    """
    # Figure + the Agg canvas directly: no pyplot global state, no backend switch for the caller
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    if not matrices:
        raise ValueError("no matrices to plot")
    blocks = dict(blocks or {})
    unknown = sorted(set(blocks) - set(matrices))
    if unknown:
        raise ValueError(f"blocks given for {unknown}, which are not among the matrices {sorted(matrices)}")

    row_label, col_label = (axis_label, axis_label) if isinstance(axis_label, str) else axis_label
    fig = Figure(figsize=(4.8 * len(matrices), 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (name, matrix) in zip(axes, matrices.items()):
        m = _as_square(matrix) if name in blocks else _as_matrix(matrix)
        rows, cols = m.shape
        extent = (first_index - 0.5, first_index + cols - 0.5, first_index - 0.5, first_index + rows - 0.5)
        # a non-square panel fills its axes: a 2 x 13 strip would otherwise be too flat to read or label
        image = ax.imshow(m, origin="lower", cmap="viridis", vmin=VMIN, vmax=VMAX, interpolation="nearest",
                          extent=extent, aspect="equal" if rows == cols else "auto")
        fig.colorbar(image, ax=ax, shrink=0.85, extend="min" if float(m.min()) < VMIN else "neither")
        for start, end in blocks.get(name, ()):
            side = end - start + 1
            ax.add_patch(Rectangle((start - 0.5, start - 0.5), side, side, fill=False, edgecolor="red", linewidth=1.8))
        ax.set_title(_TITLES.get(name, name) + (f"\n{notes[name]}" if notes and name in notes else ""), fontsize=9)
        ax.set_xlabel(col_label)
        ax.set_ylabel(row_label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)

    from superb_redundancy.core.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png", dpi=150)
    return path
