"""Layer-similarity analysis of an upstream (paper section 2.1).

``analyse`` streams an upstream's L+1 hidden states over a folder of audio into the three similarity
matrices, detects the blocks, and returns a :class:`SimilarityReport` that saves as ``similarity.json`` (the
matrices of all L+1 hidden states, blocks, their strength, settings) plus a heatmap like the paper's Fig. 2a.

As in the paper, the heat maps and the blocks index the **transformer-block outputs**, layers 0..L-1 (hidden
states 1..L); the input of layer 0 (CNN + projection) is not a layer (``include_input=True`` takes it in).
Each detected partition carries its strength (mean within-block minus mean between-block similarity) and two
answers to "is it a finding?": a permutation null (the best partition of the same matrix with the layer order
shuffled) and, where given, the same architecture at random initialisation on the same clips.

Pruning plans read off a report live in :mod:`superb_redundancy.pruning.plan`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from superb_redundancy.analysis.blocks import block_strength, detect_blocks, permutation_null, plot_similarity
from superb_redundancy.analysis.hidden_states import iter_hidden_states
from superb_redundancy.analysis.similarity import SimilarityAccumulator, pool
from superb_redundancy.core.files import atomic_dir, write_json
from superb_redundancy.core.errors import InputNotFound, UserError

__all__ = ["SimilaritySettings", "SimilarityReport", "analyse", "accumulate", "report_from_matrices",
           "random_init_upstream", "shown_matrix"]


@dataclass(frozen=True)
class SimilaritySettings:
    pool: str = "mean"  # how a T x D clip becomes a sample: mean | flatten | frames
    averaging: str = "batch"  # batch (the paper: batches of 128 centred and averaged) | whole
    batch_size: int = 128  # samples per similarity batch (averaging="batch")
    k: int = 8  # neighbours for mutual kNN (self excluded)
    max_samples: int = 4096  # cap for averaging="whole" (memory: see SimilarityAccumulator)
    n_blocks: int = 2
    forward_batch_size: int = 8  # clips per upstream forward pass
    max_seconds: Optional[float] = None  # crop longer clips
    clip_seconds: Optional[float] = None  # fit every clip to this length, cut or padded (flatten: 1.0, the paper's)
    include_input: bool = False  # blocks and heat maps over hidden states 0..L instead of the layer outputs 1..L
    permutations: int = 1000  # permutation-null draws per metric (0: none)


@dataclass
class SimilarityReport:
    matrices: dict[str, np.ndarray]  # over all L+1 hidden states
    blocks: dict[str, list[tuple[int, int]]]  # in the shown index: layers 0..L-1, or hidden states with the input
    settings: SimilaritySettings
    num_samples: int
    source: dict = field(default_factory=dict)  # what was analysed: upstream, checkpoint, data, split
    strength: dict = field(default_factory=dict)  # metric -> within, between, strength, permutation p, ...
    baseline: Optional[dict] = None  # the same architecture at random initialisation: metric -> blocks, strength

    @property
    def num_layers(self) -> int:
        """Transformer layers (the matrices index the L+1 hidden states)."""
        return next(iter(self.matrices.values())).shape[0] - 1

    @property
    def index_name(self) -> str:
        return "hidden state" if self.settings.include_input else "layer"

    def shown(self, metric: str) -> np.ndarray:
        """The matrix the blocks and the heat map index: the layer outputs, or all hidden states."""
        return shown_matrix(self.matrices[metric], self.settings.include_input)

    def layer_blocks(self, metric: str) -> list[tuple[int, int]]:
        """The blocks in transformer-layer indices (a block of hidden states h..g holds the outputs of h-1..g-1;
        the input state, if in a block, is left out)."""
        if not self.settings.include_input:
            return list(self.blocks[metric])
        out = [(max(a - 1, 0), b - 1) for a, b in self.blocks[metric] if b >= 1]
        return out

    def to_dict(self) -> dict:
        return {
            "matrices": {k: np.asarray(v).tolist() for k, v in self.matrices.items()},
            "blocks": {k: [list(b) for b in v] for k, v in self.blocks.items()},
            "blocks_index": "hidden_state" if self.settings.include_input else "layer",
            "strength": self.strength,
            "baseline": self.baseline,
            "settings": asdict(self.settings),
            "num_samples": self.num_samples,
            "source": self.source,
            "index": "matrices: hidden states 0..L (0 is the input of transformer layer 0, l+1 the output of layer "
                     "l); blocks: " + ("hidden states" if self.settings.include_input else "layers 0..L-1"),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SimilarityReport":
        known = {f.name for f in fields(SimilaritySettings)}
        settings = SimilaritySettings(**{k: v for k, v in data["settings"].items() if k in known})
        matrices = {k: np.asarray(v, dtype=float) for k, v in data["matrices"].items()}
        if data.get("blocks_index") is None:  # written before blocks indexed the layers: derive them again
            return report_from_matrices(matrices, settings, int(data["num_samples"]), dict(data.get("source", {})))
        return cls(
            matrices=matrices,
            blocks={k: [tuple(b) for b in v] for k, v in data["blocks"].items()},
            settings=settings,
            num_samples=int(data["num_samples"]),
            source=dict(data.get("source", {})),
            strength=dict(data.get("strength") or {}),
            baseline=data.get("baseline"),
        )

    @classmethod
    def load(cls, path: str | Path) -> "SimilarityReport":
        path = Path(path)
        if path.is_dir():
            path = path / "similarity.json"
        if not path.is_file():
            raise InputNotFound(f"similarity report not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise UserError(f"{path} is not a similarity report ({type(error).__name__}: {error})") from None

    #: the files :meth:`save` writes, as one unit
    FILES = ("similarity.json", "similarity.png")

    def save(self, directory: str | Path, title: Optional[str] = None) -> dict[str, Path]:
        """``similarity.json`` and ``similarity.png`` in ``directory``, written as one unit (both new, or both
        as they were: :func:`superb_redundancy.core.files.atomic_dir`); other files in ``directory`` stay."""
        directory = Path(directory)
        with atomic_dir(directory, unit=self.FILES) as tmp:
            self.write_files(tmp, title)
        return {"json": directory / "similarity.json", "figure": directory / "similarity.png"}

    def write_files(self, directory: str | Path, title: Optional[str] = None) -> dict[str, Path]:
        """:meth:`save` without the unit: for a caller that writes the report into its own unit of files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        json_path = write_json(directory / "similarity.json", self.to_dict())
        shown = {metric: self.shown(metric) for metric in self.matrices}
        figure = plot_similarity(shown, self.blocks, directory / "similarity.png", title=title,
                                 axis_label=("hidden state (0: input of layer 0)" if self.settings.include_input
                                             else "transformer layer (its output)"),
                                 notes={m: self._strength_note(m) for m in self.matrices})
        return {"json": json_path, "figure": Path(figure)}

    def _strength_note(self, metric: str) -> str:
        s = self.strength.get(metric)
        if not s:
            return ""
        note = f"within {s['within']:.2f}, between {s['between']:.2f} (strength {s['strength']:+.2f})"
        extra = []
        if s.get("permutation_p") is not None:
            extra.append(f"permutation p {s['permutation_p']:.3f}")
        base = (self.baseline or {}).get(metric)
        if base:
            extra.append(f"random init {base['strength']:+.2f}")
        return note + ("\n" + ", ".join(extra) if extra else "")

    def describe_blocks(self) -> str:
        lines = []
        for metric, blocks in self.blocks.items():
            parts = " | ".join(f"{a}-{b}" for a, b in blocks)
            line = f"{metric:>6}: {self.index_name}s {parts}"
            s = self.strength.get(metric)
            if s:
                line += (f"; within {s['within']:.3f}, between {s['between']:.3f}, strength {s['strength']:+.3f}")
                if s.get("permutation_p") is not None:
                    line += f", permutation p = {s['permutation_p']:.3f}"
            base = (self.baseline or {}).get(metric)
            if base:
                line += f"; random init: strength {base['strength']:+.3f}"
            lines.append(line)
        return "\n".join(lines)


def shown_matrix(matrix: np.ndarray, include_input: bool) -> np.ndarray:
    m = np.asarray(matrix)
    return m if include_input else m[1:, 1:]


def _partition(matrix: np.ndarray, settings: SimilaritySettings) -> tuple[list[tuple[int, int]], dict]:
    shown = shown_matrix(matrix, settings.include_input)
    n_blocks = min(settings.n_blocks, shown.shape[0])
    blocks = detect_blocks(shown, n_blocks)
    strength = block_strength(shown, blocks)
    return blocks, strength


def report_from_matrices(matrices: dict[str, np.ndarray], settings: SimilaritySettings, num_samples: int,
                         source: Optional[dict] = None,
                         baseline_matrices: Optional[dict[str, np.ndarray]] = None) -> SimilarityReport:
    """Blocks, their strength and the nulls for matrices over L+1 hidden states."""
    blocks, strength = {}, {}
    for metric, matrix in matrices.items():
        blocks[metric], strength[metric] = _partition(matrix, settings)
        if settings.permutations and shown_matrix(matrix, settings.include_input).shape[0] > settings.n_blocks:
            null = permutation_null(shown_matrix(matrix, settings.include_input), settings.n_blocks,
                                    settings.permutations)
            strength[metric].update(permutation_p=null["p"], permutation_null_mean=null["null_mean"],
                                    permutations=null["permutations"])
    baseline = None
    if baseline_matrices is not None:
        baseline = {}
        for metric, matrix in baseline_matrices.items():
            b_blocks, b_strength = _partition(matrix, settings)
            baseline[metric] = dict(b_strength, blocks=[list(b) for b in b_blocks],
                                    matrix=np.asarray(matrix).tolist())
    return SimilarityReport(matrices, blocks, settings, num_samples, dict(source or {}), strength, baseline)


Batches = Iterable[tuple[list[torch.Tensor], torch.Tensor]]


def accumulate(batches: Batches, settings: SimilaritySettings, against: Optional[Batches] = None
               ) -> tuple[dict[str, np.ndarray], int]:
    """The three matrices of streamed ``(hidden_states, frame_lengths)`` batches; (matrices, samples).

    ``against``: another model's batches of the same clips, in step with ``batches``: the matrices between the
    hidden states of ``batches`` (rows) and of ``against`` (columns) instead.
    """
    accumulator = SimilarityAccumulator(k=settings.k, averaging=settings.averaging, batch_size=settings.batch_size,
                                        max_samples=settings.max_samples)

    def pooled(batch: tuple[list[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        states, lengths = batch
        return [pool(h, lengths, settings.pool) for h in states]

    # strict: the two streams must hold the same clips, so neither may run out first
    pairs = ((b, None) for b in batches) if against is None else zip(batches, against, strict=True)
    for batch, other in pairs:
        accumulator.update(pooled(batch), None if other is None else pooled(other))
    return accumulator.compute(), accumulator.num_samples


def random_init_upstream(name: str, ckpt: Optional[str], seed: int = 1) -> Optional[torch.nn.Module]:
    """The upstream ``name`` loads from ``ckpt``, with the same architecture freshly initialised (seeded), for
    the stock ``<family>_local`` names of our families; None for anything else (no baseline is computed)."""
    import tempfile

    from superb_redundancy.core.files import load_checkpoint, torch_save
    from superb_redundancy.hub.install import build_upstream
    from superb_redundancy.models.families import FAMILIES, family_of_checkpoint

    if not ckpt or name not in {f.local_hub_name for f in FAMILIES.values()}:
        return None
    checkpoint = load_checkpoint(ckpt, "checkpoint")
    family = family_of_checkpoint(checkpoint)
    if family is None or family.local_hub_name != name:
        return None
    with tempfile.TemporaryDirectory(prefix="superb_redundancy_random_") as tmp:
        path = torch_save(family.random_checkpoint(checkpoint, seed), Path(tmp) / "random_init.pt")
        return build_upstream(name, str(path))


def analyse(upstream: torch.nn.Module, files: Sequence[Path], settings: SimilaritySettings = SimilaritySettings(),
            device: str = "cpu", progress: bool = True, source: Optional[dict] = None,
            baseline_upstream: Optional[torch.nn.Module] = None) -> SimilarityReport:
    """Similarity matrices of every pair of the upstream's hidden states over ``files``, with blocks.

    ``baseline_upstream`` (the same architecture, randomly initialised) is run on the same clips, so the report
    says how much of the block structure the architecture gives by itself.
    """
    fitted: Counter = Counter()

    def batches(model, counted=None):
        return iter_hidden_states(model, files, settings.forward_batch_size, device, settings.max_seconds, progress,
                                  settings.clip_seconds, counted)

    matrices, num_samples = accumulate(batches(upstream, fitted), settings)
    baseline = None if baseline_upstream is None else accumulate(batches(baseline_upstream), settings)[0]
    if settings.clip_seconds is not None:  # what fitting did to the clips (the paper: 1 s, padded or cut)
        source = {**(source or {}), "fit": {"seconds": settings.clip_seconds, "cut": fitted["cut"],
                                            "padded": fitted["padded"], "clips": len(files)}}
    return report_from_matrices(matrices, settings, num_samples, source, baseline)
