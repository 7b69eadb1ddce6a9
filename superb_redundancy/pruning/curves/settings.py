"""What a curves run is asked for (:class:`CurveSettings`), the tasks it can score, and its input errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from superb_redundancy.pruning.objectives import OBJECTIVES
from superb_redundancy.core.errors import UserError

__all__ = ["PAPER_OBJECTIVES", "SUPPORTED_TASKS", "CurvesInputError", "UnsupportedTaskError", "CurveSettings"]

#: the four objectives of the paper's Fig. 2b
PAPER_OBJECTIVES = ("forward", "backward", "bi", "knn-bi")


def _python_mean(values: Sequence[float]) -> float:  # speech_commands' log_records
    return sum(values) / len(values)


def _torch_mean(values: Sequence[float]) -> float:  # voxceleb1's and emotion's log_records
    return torch.FloatTensor(list(values)).mean().item()


#: tasks whose expert reports a per-sample accuracy in records["acc"] -> how its log_records averages it
SUPPORTED_TASKS: dict[str, Callable[[Sequence[float]], float]] = {
    "speech_commands": _python_mean,
    "speech_commands_35": _python_mean,  # ours (downstreams/speech_commands_35): logs as speech_commands does
    "voxceleb1": _torch_mean,
    "emotion": _torch_mean,
}


class CurvesInputError(UserError):
    """Bad input for pruning curves, found before any evaluation starts."""


class UnsupportedTaskError(CurvesInputError, NotImplementedError):
    """The experiment's task has no accuracy to draw curves of (ASR: WER curves are not implemented)."""


@dataclass(frozen=True)
class CurveSettings:
    objectives: tuple[str, ...] = PAPER_OBJECTIVES
    repeats: int = 5
    subset: float = 1.0  # fraction of the test set per repeat; 1.0: every repeat is the whole set
    seed: int = 0  # repeat r draws its subset with seed + r
    iterative: bool = False  # recompute score-objective orders on the pruned model after each removal
    device: str = "cpu"
    progress: bool = True
    #: the split whose audio the similarity (and so the score orders) comes from when no report is given
    similarity_split: str = "dev"

    def validate(self) -> "CurveSettings":
        objectives = tuple(self.objectives)
        if not objectives:
            raise CurvesInputError("no objectives given; valid: " + ", ".join(sorted(OBJECTIVES)))
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown:
            raise CurvesInputError(f"unknown objective(s) {unknown}; valid: {', '.join(sorted(OBJECTIVES))}")
        if len(set(objectives)) != len(objectives):
            raise CurvesInputError(f"objectives listed twice: {list(objectives)}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise CurvesInputError(f"repeats must be an int >= 1, got {self.repeats!r}")
        if not (isinstance(self.subset, (int, float)) and 0.0 < float(self.subset) <= 1.0):
            raise CurvesInputError(f"subset must be a fraction of the test set in (0, 1], got {self.subset!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise CurvesInputError(f"bad device {self.device!r}: {error}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CurvesInputError(f"device {self.device!r} asked for, but CUDA is not available here; "
                                   "use --device cpu")
        if self.similarity_split not in ("train", "dev", "test"):
            raise CurvesInputError(f"similarity_split must be train, dev or test, got {self.similarity_split!r}")
        return CurveSettings(objectives, self.repeats, float(self.subset), int(self.seed), bool(self.iterative),
                             self.device, self.progress, self.similarity_split)
