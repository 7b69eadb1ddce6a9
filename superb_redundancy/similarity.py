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
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

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
        raise ValueError(f"unknown pool mode {mode!r}; valid modes: {list(POOL_MODES)}")
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
                "pool mode 'flatten' needs clips of equal length (the paper's code crops to 49 frames), "
                f"got lengths {lengths.tolist()}; crop the audio or use mode 'mean' or 'frames'"
            )
        return hidden[:, : int(lengths[0])].reshape(batch, -1)
    if batch == 0:
        return hidden.new_zeros(0, hidden.shape[2])
    return torch.cat([hidden[b, : int(n)] for b, n in enumerate(lengths)], dim=0)


# ---------------------------------------------------------------------------------------------- metrics
def _check_enough_samples(n: int, k: int) -> None:
    if n < k + 1:
        raise ValueError(f"mutual kNN with k={k} needs at least k+1={k + 1} samples, got n={n}")


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


def _metrics_one_batch(x: Tensor, k: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """The three ``[M, M]`` matrices for one batch ``x: [M, n, D]``, centred on its own samples."""
    num_layers, n, _ = x.shape
    _check_enough_samples(n, k)
    x = x.to(dtype)
    tiny = torch.finfo(dtype).tiny

    scale = x.norm(dim=-1).amax(dim=-1)  # [M], before centring
    x = x - x.mean(dim=1, keepdim=True)  # a new tensor: the in-place edits below never reach the caller's
    norms = x.norm(dim=-1)  # [M, n]
    zero = norms <= _ZERO_RTOL * scale[:, None]
    x.masked_fill_(zero[..., None], 0.0)
    norms.masked_fill_(zero, 0.0)

    # cosine: contract the row-normalised stack with itself over (sample, dim) at once. Written as one
    # matmul of the [M, n*D] views, the same sum as einsum("isd,jsd->ij") but ~10x faster on CPU.
    # Zero rows stay zero (cosine 0, never 0/0).
    unit = (x / norms.clamp_min(tiny)[..., None]).reshape(num_layers, -1)
    cosine = (unit @ unit.T) / n
    del unit

    # one Gram matrix per layer, reused by CKA and kNN
    gram = torch.bmm(x, x.transpose(1, 2))  # [M, n, n]
    del x
    # Normalise each Gram in place before the product: no under/overflow of ||K_i|| ||K_j||, no extra copy,
    # and a positive per-layer factor leaves the neighbour ranking below unchanged. An all-zero layer stays 0.
    flat = gram.view(num_layers, n * n)
    flat /= flat.norm(dim=1, keepdim=True).clamp_min(tiny)
    cka = flat @ flat.T

    # kNN: exclude self in place (CKA is done with the diagonal), then a 0/1 neighbour mask per layer;
    # the pairwise overlap counts are one matmul of the flattened masks (float32 holds them exactly)
    gram.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    neighbours = gram.topk(k, dim=-1).indices  # [M, n, k]
    del gram, flat
    mask = torch.zeros(num_layers, n, n, dtype=torch.float32, device=neighbours.device)
    mask.scatter_(-1, neighbours, 1.0)
    mask = mask.reshape(num_layers, n * n)
    knn = (mask @ mask.T).to(dtype) / (n * k)

    out = {}
    for name, matrix in (("cosine", cosine), ("cka", cka), ("knn", knn)):
        matrix = (matrix + matrix.T) / 2  # matmul rounding can break exact symmetry
        matrix.fill_diagonal_(1.0)
        out[name] = matrix
    return out


def similarity_matrices(
    layers: Sequence[Tensor] | Tensor, k: int = 8, dtype: torch.dtype = torch.float64
) -> dict[str, np.ndarray]:
    """All three ``[M, M]`` similarity matrices of one set of samples, centred once (no batching).

    ``layers``: one pooled ``[n, D]`` matrix per hidden state (or a stacked ``[M, n, D]`` tensor).
    Needs ``n >= k + 1``. Peak memory is about ``M * n * D`` plus ``2 * M * n^2`` values.
    """
    out = _metrics_one_batch(_stack_layers(layers), k, dtype)
    return {name: m.cpu().numpy().astype(np.float64) for name, m in out.items()}


# ---------------------------------------------------------------------------------------------- streaming
class SimilarityAccumulator:
    """Streams pooled layer outputs and returns the ``[M, M]`` cosine / CKA / mutual-kNN matrices.

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
            raise ValueError(f"unknown averaging {averaging!r}; valid: {list(AVERAGING_MODES)}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if averaging == "batch" and batch_size < k + 1:
            raise ValueError(f"batch_size={batch_size} is smaller than k+1={k + 1}: no batch could find k neighbours")
        if averaging == "whole" and max_samples < k + 1:
            raise ValueError(f"max_samples={max_samples} is smaller than k+1={k + 1}")
        self.k = k
        self.averaging = averaging
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        self._chunks: list[Tensor] = []  # [M, n_b, D] each, not yet consumed
        self._buffered = 0
        self._shape: Optional[tuple[int, int]] = None  # (M, D) fixed by the first update
        self._sums: Optional[dict[str, Tensor]] = None  # batch mode: sum of n_b * metric over full batches
        self.num_samples = 0  # samples seen, including any dropped in whole mode
        self.num_batches = 0  # full batches consumed so far (batch mode)
        self._warned = False

    def update(self, layers: Sequence[Tensor] | Tensor) -> None:
        """Add one chunk: a pooled ``[n_b, D]`` matrix per hidden state (same ``n_b`` for all)."""
        x = _stack_layers(layers)
        shape = (x.shape[0], x.shape[2])
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise ValueError(f"expected {self._shape[0]} layers of dim {self._shape[1]} as before, got {shape}")
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
                x = x[:, :room]
            if x.shape[1]:
                self._chunks.append(x)
                self._buffered += x.shape[1]
            return

        self._chunks.append(x)
        self._buffered += x.shape[1]
        # Consume a batch only while more than k samples would stay behind, so a short tail can still be merged.
        if self._buffered >= self.batch_size + self.k + 1:
            buffer = torch.cat(self._chunks, dim=1)
            start = 0
            while self._buffered - start >= self.batch_size + self.k + 1:
                self._add_batch(buffer[:, start : start + self.batch_size])
                start += self.batch_size
                self.num_batches += 1
            self._chunks = [buffer[:, start:].clone()]  # clone: release the consumed part
            self._buffered -= start

    def _add_batch(self, x: Tensor) -> None:
        n = x.shape[1]
        metrics = _metrics_one_batch(x, self.k, self.dtype)
        if self._sums is None:
            self._sums = {name: n * m for name, m in metrics.items()}
        else:
            for name in METRICS:
                self._sums[name] += n * metrics[name]

    def compute(self) -> dict[str, np.ndarray]:
        """The symmetric ``[M, M]`` matrices ``{"cosine", "cka", "knn"}`` (float64); does not reset."""
        if self._shape is None:
            raise ValueError("no samples: call update() before compute()")
        rest = torch.cat(self._chunks, dim=1) if self._chunks else None
        n_rest = 0 if rest is None else rest.shape[1]

        if self.averaging == "whole":
            _check_enough_samples(n_rest, self.k)
            return similarity_matrices(rest, self.k, self.dtype)

        # consumed batches are all full, so their total weight is num_batches * batch_size
        sums, weight = self._sums, self.num_batches * self.batch_size
        if sums is None:
            _check_enough_samples(n_rest, self.k)
        if n_rest:
            if sums is None:
                sums = {name: 0.0 for name in METRICS}
            # rest has <= batch_size + k samples: one batch, holding a merged tail if it exceeds batch_size
            metrics = _metrics_one_batch(rest, self.k, self.dtype)
            sums = {name: sums[name] + n_rest * metrics[name] for name in METRICS}  # new tensors: state untouched
            weight += n_rest
        return {name: (sums[name] / weight).cpu().numpy().astype(np.float64) for name in METRICS}
