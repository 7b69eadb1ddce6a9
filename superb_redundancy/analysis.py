"""Layer-similarity analysis of an upstream, and pruning plans read off it (paper sections 2.1-2.2).

``analyse`` streams an upstream's L+1 hidden states over a folder of audio into the three similarity
matrices, detects the blocks, and returns a :class:`SimilarityReport` that saves as ``similarity.json`` (the
matrices, blocks, settings) plus a heatmap like the paper's Fig. 2a. ``plan_pruning`` turns a report into a
prune spec for an objective and amount: statically (scores from the unpruned model, the paper's choice) or
iteratively (scores recomputed on the pruned model after each removal).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .atomic import write_json
from .blocks import detect_blocks, plot_similarity
from .features import iter_hidden_states
from .pruning_order import OBJECTIVES, block_influence, layers_to_drop, prune_order
from .similarity import SimilarityAccumulator, pool

__all__ = ["SimilaritySettings", "SimilarityReport", "analyse", "objective_scores", "plan_pruning", "PruningPlan"]

#: score objectives and the matrix their block influence reads
SCORE_METRIC = {"bi": "cosine", "knn-bi": "knn", "cka-bi": "cka"}


@dataclass(frozen=True)
class SimilaritySettings:
    pool: str = "mean"  # how a T x D clip becomes a sample: mean | flatten | frames
    averaging: str = "batch"  # batch (the paper: batches of 128 centred and averaged) | whole
    batch_size: int = 128  # samples per similarity batch (averaging="batch")
    k: int = 8  # neighbours for mutual kNN (self excluded)
    max_samples: int = 4096  # cap for averaging="whole" (memory: see SimilarityAccumulator)
    n_blocks: int = 2
    forward_batch_size: int = 8  # clips per upstream forward pass
    max_seconds: Optional[float] = None  # crop clips (flatten needs equal lengths)


@dataclass
class SimilarityReport:
    matrices: dict[str, np.ndarray]
    blocks: dict[str, list[tuple[int, int]]]
    settings: SimilaritySettings
    num_samples: int
    source: dict = field(default_factory=dict)  # what was analysed: upstream name, checkpoint, data

    @property
    def num_layers(self) -> int:
        """Transformer layers (the matrices index the L+1 hidden states)."""
        return next(iter(self.matrices.values())).shape[0] - 1

    def to_dict(self) -> dict:
        return {
            "matrices": {k: np.asarray(v).tolist() for k, v in self.matrices.items()},
            "blocks": {k: [list(b) for b in v] for k, v in self.blocks.items()},
            "settings": asdict(self.settings),
            "num_samples": self.num_samples,
            "source": self.source,
            "index": "hidden states 0..L: 0 is the input of transformer layer 0, l+1 the output of layer l",
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SimilarityReport":
        return cls(
            matrices={k: np.asarray(v, dtype=float) for k, v in data["matrices"].items()},
            blocks={k: [tuple(b) for b in v] for k, v in data["blocks"].items()},
            settings=SimilaritySettings(**data["settings"]),
            num_samples=int(data["num_samples"]),
            source=dict(data.get("source", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> "SimilarityReport":
        path = Path(path)
        if path.is_dir():
            path = path / "similarity.json"
        if not path.is_file():
            raise FileNotFoundError(f"similarity report not found: {path}")
        return cls.from_dict(json.loads(path.read_text()))

    def save(self, directory: str | Path, title: Optional[str] = None) -> dict[str, Path]:
        """``similarity.json`` and ``similarity.png`` in ``directory``, each written atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        json_path = write_json(directory / "similarity.json", self.to_dict())
        figure = plot_similarity(self.matrices, self.blocks, directory / "similarity.png", title=title)
        return {"json": json_path, "figure": Path(figure)}

    def describe_blocks(self) -> str:
        lines = []
        for metric, blocks in self.blocks.items():
            parts = ", ".join(f"hidden states {a}-{b}" for a, b in blocks)
            lines.append(f"{metric:>6}: {parts}")
        return "\n".join(lines)


def analyse(upstream: torch.nn.Module, files: Sequence[Path], settings: SimilaritySettings = SimilaritySettings(),
            device: str = "cpu", progress: bool = True, source: Optional[dict] = None) -> SimilarityReport:
    """Similarity matrices of every pair of the upstream's hidden states over ``files``, with blocks."""
    accumulator = SimilarityAccumulator(k=settings.k, averaging=settings.averaging, batch_size=settings.batch_size,
                                        max_samples=settings.max_samples)
    for states, lengths in iter_hidden_states(upstream, files, settings.forward_batch_size, device,
                                              settings.max_seconds, progress):
        accumulator.update([pool(h, lengths, settings.pool) for h in states])
    matrices = accumulator.compute()
    blocks = {metric: detect_blocks(matrix, settings.n_blocks) for metric, matrix in matrices.items()}
    return SimilarityReport(matrices, blocks, settings, accumulator.num_samples, dict(source or {}))


def objective_scores(objective: str, report: SimilarityReport) -> Optional[np.ndarray]:
    """Block influence per transformer layer for score objectives; None for forward/backward."""
    metric = SCORE_METRIC.get(objective)
    return None if metric is None else block_influence(report.matrices[metric])


@dataclass(frozen=True)
class PruningPlan:
    objective: str
    order: list[int]  # full order, most prunable first (layer 0 left out unless asked)
    scores: Optional[list[float]]  # per transformer layer, on the unpruned model (None: positional objective)
    drop_layers: list[int]
    iterative: bool

    def describe(self) -> str:
        lines = [f"objective {self.objective} ({'iterative' if self.iterative else 'static'}): "
                 f"drop {sorted(self.drop_layers)}"]
        for rank, layer in enumerate(self.order):
            score = "" if self.scores is None else f"  score {self.scores[layer]:.4f}"
            mark = "  <- dropped" if layer in self.drop_layers else ""
            lines.append(f"  {rank + 1:>2}. layer {layer:>2}{score}{mark}")
        return "\n".join(lines)


def plan_pruning(report: SimilarityReport, objective: str, amount: int | float, keep_first: bool = True,
                 reanalyse: Optional[Callable[[list[int]], SimilarityReport]] = None) -> PruningPlan:
    """Which layers to drop for ``objective`` and ``amount`` (a count, or a fraction of L).

    Static (default): one order from the unpruned model's report. Iterative: pass ``reanalyse(dropped) ->
    report of the model with those layers dropped``; after each removal the scores are recomputed and the
    lowest-scoring remaining layer goes next (positional objectives are the same either way).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown pruning objective {objective!r}; valid: {sorted(OBJECTIVES)}")
    num_layers = report.num_layers
    order = prune_order(objective, num_layers, report.matrices, keep_first=keep_first)
    scores = objective_scores(objective, report)
    count = len(layers_to_drop(order, amount, num_layers))
    if reanalyse is None or scores is None:
        return PruningPlan(objective, order, None if scores is None else scores.tolist(), order[:count], False)
    dropped: list[int] = []
    current = report
    for _ in range(count):
        current_scores = objective_scores(objective, current)
        candidates = [i for i in range(num_layers) if i not in dropped and not (keep_first and i == 0)]
        dropped.append(min(candidates, key=lambda i: (current_scores[i], i)))
        if len(dropped) < count:
            current = reanalyse(list(dropped))
    remaining = [i for i in order if i not in dropped]
    return PruningPlan(objective, dropped + remaining, scores.tolist(), dropped, True)
