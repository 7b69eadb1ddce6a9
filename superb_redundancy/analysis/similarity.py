"""Layer-similarity metrics between the hidden states of a speech SSL model (paper section 2.1).

For every pair of the ``L + 1`` hidden states (input of layer 0, then the output of each transformer
layer) three symmetric similarities are computed on representations **column-centred across samples**
(the paper: "we center all the representations"):

* ``"cosine"``: per-sample cosine between the same sample's vectors at layers i and j, averaged over samples;
* ``"cka"``: linear CKA (Kornblith et al., 2019) in its HSIC form,
  ``<K_i, K_j>_F / (||K_i||_F ||K_j||_F)`` with ``K = A A^T`` the Gram matrix of the centred ``A``
  (equal to ``||A_j^T A_i||_F^2 / (||A_i^T A_i||_F ||A_j^T A_j||_F)``);
* ``"knn"``: mutual k-nearest-neighbour alignment (Huh et al., 2024), ``mean_s |N_k^i(s) & N_k^j(s)| / k``
  with neighbours ranked by inner product of the centred vectors, the sample itself excluded.

The diagonal is 1 for every metric by definition (a layer is identical to itself), also where a layer is
all zero and the formulas would read 0/0. Nothing here imports s3prl: inputs are plain tensors.

**Two models** (``against=``): the same metrics between every hidden state of one model (rows) and every
hidden state of another (columns) on the same samples, e.g. a pruned or mimicking variant against its teacher.
Each side is centred and prepared on its own exactly as in the one-model case (which is the same code with
both sides the same), so a model against itself gives its own matrices up to float rounding; the cross
matrices are neither symmetric nor of unit diagonal by construction. Cosine compares the same sample's
vectors, so it needs the two sides to have the same width; CKA and kNN do not (cosine is left out otherwise).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from superb_redundancy.core.errors import UserError

__all__ = ["METRICS", "POOL_MODES", "pool", "similarity_matrices", "SimilarityAccumulator"]

METRICS: tuple[str, ...] = ("cosine", "cka", "knn")
POOL_MODES: tuple[str, ...] = ("mean", "flatten", "frames")
AVERAGING_MODES: tuple[str, ...] = ("batch", "whole")

# A centred row whose norm is below this fraction of the layer's largest (uncentred) row norm is treated as
# exactly zero: centring identical rows (e.g. silent clips) leaves rounding residue whose direction is noise.
# Relative, so isotropic scaling of a layer does not change which rows count as zero.
_ZERO_RTOL = 1e-10


# ---------------------------------------------------------------------------------------------- pooling
def pool(hidden: Tensor, lengths: Optional[Tensor] = None, mode: str = "mean") -> Tensor:
    """Turn one layer's padded hidden states ``[B, T, d]`` into a sample matrix ``[n, D]``.

    ``lengths`` holds each clip's number of valid frames (``None``: all ``T`` frames are valid).

    * ``"mean"``: mean over valid frames, ``n = B``, ``D = d``; a clip with 0 frames gives a zero vector.
    * ``"flatten"``: the paper's code, ``n = B``, ``D = T' * d``; needs every clip to have the same length T'.
    * ``"frames"``: every valid frame is a sample, ``n = sum(lengths)``, ``D = d``.
    """
    if mode not in POOL_MODES:
        raise UserError(f"unknown pool mode {mode!r}; valid modes: {list(POOL_MODES)}")
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [batch, frames, dim], got shape {tuple(hidden.shape)}")
    batch, frames, _ = hidden.shape
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long)
    lengths = torch.as_tensor(lengths).to(device=hidden.device, dtype=torch.long).reshape(-1)
    if lengths.numel() != batch:
        raise ValueError(f"got {lengths.numel()} lengths for a batch of {batch} clips")
    if bool((lengths < 0).any()) or bool((lengths > frames).any()):
        raise ValueError(f"lengths must lie in 0..{frames} (the padded frame count), got {lengths.tolist()}")

    if mode == "mean":
        valid = torch.arange(frames, device=hidden.device)[None, :] < lengths[:, None]  # [B, T]
        summed = (hidden * valid[..., None].to(hidden.dtype)).sum(dim=1)
        # clamp: an empty clip gives 0 / 1 = 0 instead of NaN
        return summed / lengths.clamp_min(1)[:, None].to(hidden.dtype)
    if mode == "flatten":
        if bool((lengths != lengths[0]).any()):
            raise ValueError(
                "pool mode 'flatten' needs clips of equal length (the paper fits every clip to 1 s: 49 frames), "
                f"got lengths {lengths.tolist()}; give clip_seconds (--clip-seconds 1) or use mode 'mean' or 'frames'"
            )
        return hidden[:, : int(lengths[0])].reshape(batch, -1)
    if batch == 0:
        return hidden.new_zeros(0, hidden.shape[2])
    return torch.cat([hidden[b, : int(n)] for b, n in enumerate(lengths)], dim=0)


# ---------------------------------------------------------------------------------------------- metrics
def _check_enough_samples(n: int, k: int) -> None:
    if n < k + 1:
        raise UserError(f"mutual kNN with k={k} needs at least k+1={k + 1} samples, got n={n}")


def _stack_layers(layers: Sequence[Tensor] | Tensor) -> Tensor:
    """``[M, n, D]`` from one ``[n, D]`` matrix per layer, validating that the shapes agree."""
    if isinstance(layers, Tensor):
        if layers.dim() != 3:
            raise ValueError(f"a stacked layer tensor must be [layers, samples, dim], got {tuple(layers.shape)}")
        return layers.detach()
    layers = list(layers)
    if len(layers) < 1:
        raise ValueError("got no layers")
    shapes = [tuple(x.shape) for x in layers]
    if any(len(s) != 2 for s in shapes):
        raise ValueError(f"each layer must be a pooled [samples, dim] matrix (see pool()), got shapes {shapes}")
    if len(set(shapes)) != 1:
        raise ValueError(f"all layers need the same [samples, dim] shape, got {shapes}")
    return torch.stack([x.detach() for x in layers])


def _centred(x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``x: [M, n, D]`` centred over its samples, near-zero rows set to exactly 0; and the row norms ``[M, n]``."""
    x = x.to(dtype)
    scale = x.norm(dim=-1).amax(dim=-1)  # [M], before centring
    x = x - x.mean(dim=1, keepdim=True)  # a new tensor: the in-place edits below never reach the caller's
    norms = x.norm(dim=-1)  # [M, n]
    zero = norms <= _ZERO_RTOL * scale[:, None]
    x.masked_fill_(zero[..., None], 0.0)
    norms.masked_fill_(zero, 0.0)
    return x, norms


def _unit_rows(x: Tensor, norms: Tensor) -> Tensor:
    """``[M, n*D]``: every sample's vector scaled to norm 1 (zero rows stay zero: cosine 0, never 0/0)."""
    return (x / norms.clamp_min(torch.finfo(x.dtype).tiny)[..., None]).reshape(x.shape[0], -1)


def _unit_grams(x: Tensor) -> Tensor:
    """``[M, n, n]`` Gram matrix per layer, each scaled in place to Frobenius norm 1 (an all-zero layer stays 0).
    Normalising before the product: no under/overflow of ||K_i|| ||K_j||, no extra copy, and a positive
    per-layer factor leaves the neighbour ranking of :func:`_neighbour_masks` unchanged."""
    num_layers, n, _ = x.shape
    gram = torch.bmm(x, x.transpose(1, 2))
    flat = gram.view(num_layers, n * n)
    flat /= flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return gram


def _neighbour_masks(gram: Tensor, k: int) -> Tensor:
    """``[M, n*n]`` 0/1 masks of each sample's k nearest neighbours (self excluded), from the Grams, which this
    overwrites (their diagonal); float32 holds the overlap counts of their products exactly."""
    num_layers, n, _ = gram.shape
    gram.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    neighbours = gram.topk(k, dim=-1).indices  # [M, n, k]
    mask = torch.zeros(num_layers, n, n, dtype=torch.float32, device=neighbours.device)
    mask.scatter_(-1, neighbours, 1.0)
    return mask.reshape(num_layers, n * n)


def _metrics_one_batch(x: Tensor, k: int, dtype: torch.dtype, against: Optional[Tensor] = None) -> dict[str, Tensor]:
    """The ``[M, M']`` matrices between the layers of ``x: [M, n, D]`` (rows) and of ``against: [M', n, D']``
    (columns; None: ``x`` itself, ``M' = M``), each side centred on its own samples of this batch.

    The one-model case runs the same steps with one side standing for both, so it prepares each layer once,
    and is then made exactly symmetric with a unit diagonal.
    """
    n = x.shape[1]
    _check_enough_samples(n, k)
    sides = [_centred(x, dtype)] + ([] if against is None else [_centred(against, dtype)])
    rows, cols = sides[0], sides[-1]
    out = {}

    # cosine: contract the row-normalised stacks over (sample, dim) at once. Written as one matmul of the
    # [M, n*D] views, the same sum as einsum("isd,jsd->ij") but ~10x faster on CPU.
    if rows[0].shape[2] == cols[0].shape[2]:
        units = [_unit_rows(*side) for side in sides]
        out["cosine"] = (units[0] @ units[-1].T) / n
        del units

    # one Gram matrix per layer, reused by CKA and kNN
    grams = [_unit_grams(side[0]) for side in sides]
    del sides, rows, cols
    flats = [g.view(g.shape[0], n * n) for g in grams]
    out["cka"] = flats[0] @ flats[-1].T
    del flats
    # kNN: the pairwise overlap counts are one matmul of the flattened masks (CKA is done with the Grams)
    masks = [_neighbour_masks(g, k) for g in grams]
    del grams
    out["knn"] = (masks[0] @ masks[-1].T).to(dtype) / (n * k)
    del masks

    if against is None:
        for name, matrix in out.items():
            matrix = (matrix + matrix.T) / 2  # matmul rounding can break exact symmetry
            matrix.fill_diagonal_(1.0)
            out[name] = matrix
    return {name: out[name] for name in METRICS if name in out}


def _check_pair(x: Tensor, against: Optional[Tensor]) -> None:
    if against is not None and against.shape[1] != x.shape[1]:
        raise ValueError(f"the two models' layers must hold the same samples: got {x.shape[1]} and "
                         f"{against.shape[1]} (pool mode 'frames' needs the same frame count from both)")


def similarity_matrices(
    layers: Sequence[Tensor] | Tensor, k: int = 8, dtype: torch.dtype = torch.float64,
    against: Optional[Sequence[Tensor] | Tensor] = None,
) -> dict[str, np.ndarray]:
    """The ``[M, M]`` similarity matrices of one set of samples, centred once (no batching).

    ``layers``: one pooled ``[n, D]`` matrix per hidden state (or a stacked ``[M, n, D]`` tensor).
    ``against``: another model's ``M'`` layers on the same ``n`` samples: the ``[M, M']`` matrices between
    ``layers`` (rows) and ``against`` (columns) instead; cosine only where both have the same ``D``.
    Needs ``n >= k + 1``. Peak memory is about ``M * n * D`` plus ``2 * M * n^2`` values (per side).
    """
    x = _stack_layers(layers)
    other = None if against is None else _stack_layers(against)
    _check_pair(x, other)
    out = _metrics_one_batch(x, k, dtype, other)
    return {name: m.cpu().numpy().astype(np.float64) for name, m in out.items()}


# ---------------------------------------------------------------------------------------------- streaming
class SimilarityAccumulator:
    """Streams pooled layer outputs and returns the ``[M, M]`` cosine / CKA / mutual-kNN matrices; given
    ``against=`` layers in :meth:`update` (every call), the ``[M, M']`` matrices against them instead.

    ``averaging="batch"`` (the paper's code): samples are regrouped into batches of ``batch_size``
    whatever the chunk sizes given to :meth:`update`; each batch is centred on its own, the metrics are
    computed per batch and averaged, weighted by batch size (a plain mean when every batch is full; kNN
    neighbours are searched within the batch). At the end, a remainder of ``k+1 .. batch_size`` samples is
    its own (lighter) batch; a remainder smaller than ``k + 1`` is **merged** into the last full batch
    (nothing is dropped). Memory: at most ``batch_size + k`` buffered samples plus one chunk.

    ``averaging="whole"``: the first ``max_samples`` samples are kept (later ones are dropped, with a
    warning), centred once and compared once. Memory bound: ``M * max_samples * D`` stored values (the
    input dtype) plus, at :meth:`compute`, a ``dtype`` copy of them and ``M * max_samples^2`` Gram values in
    ``dtype`` plus as many float32 neighbour-mask values. With ``M = 13``, ``max_samples = 4096``, ``D = 768``
    that is about 0.16 GB stored and 2.9 GB at compute; with ``pool(mode="flatten")`` ``D = 49 * 768``.
    With ``against`` both sides are held: add the same for its ``M'`` layers.
    """

    def __init__(
        self,
        k: int = 8,
        averaging: str = "batch",
        batch_size: int = 128,
        max_samples: int = 4096,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if averaging not in AVERAGING_MODES:
            raise UserError(f"unknown averaging {averaging!r}; valid: {list(AVERAGING_MODES)}")
        if not isinstance(k, int) or k < 1:
            raise UserError(f"k must be a positive int, got {k!r}")
        if averaging == "batch" and batch_size < k + 1:
            raise UserError(f"batch_size={batch_size} is smaller than k+1={k + 1}: no batch could find k neighbours")
        if averaging == "whole" and max_samples < k + 1:
            raise UserError(f"max_samples={max_samples} is smaller than k+1={k + 1}")
        self.k = k
        self.averaging = averaging
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        # not yet consumed: [M, n_b, D] each, with the matching [M', n_b, D'] against-chunk (None: one model)
        self._chunks: list[tuple[Tensor, Optional[Tensor]]] = []
        self._buffered = 0
        # (M, D) and, against another model, (M', D'); fixed by the first update
        self._shapes: Optional[tuple[tuple[int, int], Optional[tuple[int, int]]]] = None
        self._sums: Optional[dict[str, Tensor]] = None  # batch mode: sum of n_b * metric over full batches
        self.num_samples = 0  # samples seen, including any dropped in whole mode
        self.num_batches = 0  # full batches consumed so far (batch mode)
        self._warned = False

    def update(self, layers: Sequence[Tensor] | Tensor, against: Optional[Sequence[Tensor] | Tensor] = None) -> None:
        """Add one chunk: a pooled ``[n_b, D]`` matrix per hidden state (same ``n_b`` for all); ``against``: the
        other model's pooled ``[n_b, D']`` matrices of the same samples (give it on every call, or never)."""
        x = _stack_layers(layers)
        other = None if against is None else _stack_layers(against)
        _check_pair(x, other)
        shapes = ((x.shape[0], x.shape[2]), None if other is None else (other.shape[0], other.shape[2]))
        if self._shapes is None:
            self._shapes = shapes
        elif (shapes[1] is None) != (self._shapes[1] is None):
            raise ValueError("give `against` layers on every update or on none (one accumulator, one kind of matrix)")
        elif shapes != self._shapes:
            def text(side):
                return f"{side[0]} layers of dim {side[1]}"
            now, before = (" and ".join(text(s) for s in pair if s) for pair in (shapes, self._shapes))
            raise ValueError(f"expected {before} as before, got {now}")
        self.num_samples += x.shape[1]

        if self.averaging == "whole":
            room = self.max_samples - self._buffered
            if x.shape[1] > room:
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"SimilarityAccumulator(averaging='whole') keeps the first max_samples={self.max_samples} "
                        f"samples; dropping the rest (seen so far: {self.num_samples})",
                        stacklevel=2,
                    )
                x, other = _take(x, other, 0, room)
            if x.shape[1]:
                self._chunks.append((x, other))
                self._buffered += x.shape[1]
            return

        self._chunks.append((x, other))
        self._buffered += x.shape[1]
        # Consume a batch only while more than k samples would stay behind, so a short tail can still be merged.
        if self._buffered >= self.batch_size + self.k + 1:
            buffer = self._joined()
            start = 0
            while self._buffered - start >= self.batch_size + self.k + 1:
                self._add_batch(*_take(*buffer, start, start + self.batch_size))
                start += self.batch_size
                self.num_batches += 1
            rest = _take(*buffer, start, None)
            self._chunks = [(rest[0].clone(), None if rest[1] is None else rest[1].clone())]  # release the consumed
            self._buffered -= start

    def _joined(self) -> tuple[Tensor, Optional[Tensor]]:
        """The buffered chunks as one ``(layers, against)`` pair, concatenated over samples."""
        x = torch.cat([c[0] for c in self._chunks], dim=1)
        other = None if self._chunks[0][1] is None else torch.cat([c[1] for c in self._chunks], dim=1)
        return x, other

    def _add_batch(self, x: Tensor, other: Optional[Tensor]) -> None:
        n = x.shape[1]
        metrics = _metrics_one_batch(x, self.k, self.dtype, other)
        if self._sums is None:
            self._sums = {name: n * m for name, m in metrics.items()}
        else:
            for name in self._sums:
                self._sums[name] += n * metrics[name]

    def compute(self) -> dict[str, np.ndarray]:
        """The matrices ``{"cosine", "cka", "knn"}`` (float64; symmetric ``[M, M]``, or ``[M, M']`` against
        another model, where cosine is left out if the widths differ); does not reset."""
        if self._shapes is None:
            raise ValueError("no samples: call update() before compute()")
        rest = self._joined() if self._chunks else None
        n_rest = 0 if rest is None else rest[0].shape[1]

        if self.averaging == "whole":
            _check_enough_samples(n_rest, self.k)
            out = _metrics_one_batch(rest[0], self.k, self.dtype, rest[1])
            return {name: m.cpu().numpy().astype(np.float64) for name, m in out.items()}

        # consumed batches are all full, so their total weight is num_batches * batch_size
        sums, weight = self._sums, self.num_batches * self.batch_size
        if sums is None:
            _check_enough_samples(n_rest, self.k)
        if n_rest:
            # rest has <= batch_size + k samples: one batch, holding a merged tail if it exceeds batch_size
            metrics = _metrics_one_batch(rest[0], self.k, self.dtype, rest[1])
            if sums is None:
                sums = {name: 0.0 for name in metrics}
            sums = {name: sums[name] + n_rest * metrics[name] for name in metrics}  # new tensors: state untouched
            weight += n_rest
        return {name: (sums[name] / weight).cpu().numpy().astype(np.float64) for name in sums}


def _take(x: Tensor, other: Optional[Tensor], start: int, stop: Optional[int]) -> tuple[Tensor, Optional[Tensor]]:
    """Samples ``start:stop`` of both sides."""
    return x[:, start:stop], None if other is None else other[:, start:stop]
