"""One model's hidden states against another's: which reference layer each layer of a variant reproduces.

``cross_analyse`` runs a variant (a pruned model, a mimicker, any upstream) and a reference (typically its
teacher) on the **same clips in the same batches**, pools both the same way and streams them through one
:class:`~superb_redundancy.analysis.similarity.SimilarityAccumulator` with ``against=``: the cosine, CKA and mutual-kNN
matrices between every hidden state of the variant (rows) and every hidden state of the reference (columns),
with the one-model analysis's settings (pooling, batch averaging, k). The two may have different numbers of
hidden states (a pruned model in compact form has fewer; a mimicker has its N layers + 1). Cosine compares the
same sample's vectors, so it is left out when the two widths differ; CKA and kNN are not.

A model against itself gives its own matrices of :func:`superb_redundancy.analysis.report.analyse` up to float
rounding (1e-12 in float64); the cross matrices are neither symmetric nor of unit diagonal by construction.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from superb_redundancy.analysis.blocks import plot_similarity
from superb_redundancy.analysis.hidden_states import iter_hidden_states
from superb_redundancy.analysis.report import SimilaritySettings, accumulate
from superb_redundancy.analysis.similarity import METRICS
from superb_redundancy.core.files import atomic_dir, write_json
from superb_redundancy.core.errors import InputNotFound, UserError

__all__ = ["CrossSimilarityReport", "cross_analyse"]

_NAMES = {"cosine": "cosine", "cka": "CKA", "knn": "kNN"}


@dataclass
class CrossSimilarityReport:
    matrices: dict[str, np.ndarray]  # metric -> [variant hidden states, reference hidden states]
    settings: SimilaritySettings
    num_samples: int
    variant: str  # how the rows' model is named on the axes and in the text
    reference: str  # the columns' model
    source: dict = field(default_factory=dict)  # {"variant": {...}, "reference": {...}, "data": ..., "clips": ...}

    #: the files :meth:`save` writes, as one unit
    FILES = ("cross_similarity.json", "cross_similarity.png")

    @property
    def shape(self) -> tuple[int, int]:
        """(variant hidden states, reference hidden states)."""
        return tuple(next(iter(self.matrices.values())).shape)

    def best_matches(self) -> dict[str, list[int]]:
        """Per metric, for each variant hidden state the most similar reference hidden state (ties: the lower)."""
        return {metric: [int(j) for j in np.argmax(np.asarray(m), axis=1)] for metric, m in self.matrices.items()}

    def describe(self) -> str:
        from tabulate import tabulate

        rows, cols = self.shape
        best = self.best_matches()
        table = [[i] + [f"{best[m][i]} ({self.matrices[m][i, best[m][i]]:.3f})" for m in self.matrices]
                 for i in range(rows)]
        head = (f"{self.variant} (rows: {rows} hidden states) against {self.reference} (columns: {cols} hidden "
                f"states) over {self.num_samples} samples, pool={self.settings.pool}")
        note = "" if "cosine" in self.matrices else "\n(no cosine: the two models' hidden states differ in width)"
        return (f"{head}\nmost similar {self.reference} hidden state for each {self.variant} hidden state "
                f"(0: the input of layer 0):\n"
                + tabulate(table, headers=["hidden state"] + [_NAMES.get(m, m) for m in self.matrices],
                           tablefmt="github") + note)

    def to_dict(self) -> dict:
        return {
            "kind": "cross_similarity",
            "matrices": {k: np.asarray(v).tolist() for k, v in self.matrices.items()},
            "best_match": self.best_matches(),
            "variant": self.variant,
            "reference": self.reference,
            "settings": asdict(self.settings),
            "num_samples": self.num_samples,
            "source": self.source,
            "index": "matrices[metric][i][j]: hidden state i of the variant (rows) against hidden state j of the "
                     "reference (columns); hidden state 0 is the input of layer 0, l+1 the output of layer l",
        }

    @classmethod
    def load(cls, path: str | Path) -> "CrossSimilarityReport":
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILES[0]
        if not path.is_file():
            raise InputNotFound(f"cross-similarity report not found: {path}")
        try:
            data = json.loads(path.read_text())
            if data.get("kind") != "cross_similarity":
                raise KeyError("kind")
            known = {f.name for f in fields(SimilaritySettings)}
            settings = SimilaritySettings(**{k: v for k, v in data["settings"].items() if k in known})
            return cls({k: np.asarray(v, dtype=float) for k, v in data["matrices"].items()}, settings,
                       int(data["num_samples"]), data["variant"], data["reference"], dict(data.get("source", {})))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path} is not a cross-similarity report ({type(error).__name__}: {error})") from None

    def save(self, directory: str | Path, title: Optional[str] = None) -> dict[str, Path]:
        """``cross_similarity.json`` and ``cross_similarity.png`` in ``directory``, written as one unit."""
        directory = Path(directory)
        with atomic_dir(directory, unit=self.FILES) as tmp:
            write_json(tmp / self.FILES[0], self.to_dict())
            plot_similarity(self.matrices, None, tmp / self.FILES[1], title=title,
                            axis_label=(_axis_label(self.variant), _axis_label(self.reference)))
        return {"json": directory / self.FILES[0], "figure": directory / self.FILES[1]}


def _axis_label(name: str) -> str:
    # wrapped: a model named with its checkpoint file is longer than a panel is high
    return textwrap.fill(f"{name} hidden state", width=36, break_on_hyphens=False)


def cross_analyse(variant: torch.nn.Module, reference: torch.nn.Module, files: Sequence[Path],
                  settings: SimilaritySettings = SimilaritySettings(), device: str = "cpu", progress: bool = True,
                  names: tuple[str, str] = ("variant", "reference"), source: Optional[dict] = None
                  ) -> CrossSimilarityReport:
    """The matrices between every hidden state of ``variant`` (rows) and of ``reference`` (columns) over
    ``files``, both run on the same batches of clips; ``names``: (variant, reference) for axes and text."""

    def batches(model: torch.nn.Module, show: bool):
        return iter_hidden_states(model, files, settings.forward_batch_size, device, settings.max_seconds, show,
                                  settings.clip_seconds)

    matrices, num_samples = accumulate(batches(variant, progress), settings, against=batches(reference, False))
    matrices = {name: matrices[name] for name in METRICS if name in matrices}
    return CrossSimilarityReport(matrices, settings, num_samples, names[0], names[1], dict(source or {}))
