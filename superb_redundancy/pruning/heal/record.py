"""What a healing run did: its progress epoch by epoch (:class:`Progress`, saved with the resumable state), the
record the healed artifact carries (:func:`healing_record`) and its one-line summary (:func:`describe`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from superb_redundancy.pruning.heal.config import HealConfig
from superb_redundancy.pruning.heal.model import PrunedModel
from superb_redundancy.pruning.heal.teacher import TeacherInfo

__all__ = ["Progress", "healing_record", "describe", "RECORD_VERSION"]

RECORD_VERSION = 1


@dataclass
class Progress:
    """Where a healing run stands: what the state file holds besides weights and optimizer."""

    history: list[dict]
    best_epoch: int
    best_loss: float
    best_weights: Optional[dict]  # None: the input's (epoch 0, the unhealed model, is a candidate)
    steps: int = 0
    seconds: float = 0.0

    @property
    def epoch(self) -> int:
        return int(self.history[-1]["epoch"])

    def add(self, epoch: int, train_loss: float, terms: list[float], seconds: float, weights) -> None:
        self.history.append({"epoch": epoch, "train_loss": train_loss, "loss": sum(terms), "terms": terms,
                             "seconds": round(seconds, 3)})
        self.seconds += seconds
        if sum(terms) < self.best_loss:
            self.best_epoch, self.best_loss, self.best_weights = epoch, float(sum(terms)), weights()

    def terms_of(self, epoch: int) -> list[float]:
        return next(h["terms"] for h in self.history if h["epoch"] == epoch)


def healing_record(model: PrunedModel, source: dict, teacher: TeacherInfo, cache, cache_id: dict,
                   config: HealConfig, pairs: Sequence[tuple[int, int]], run: Progress, train_clips: int,
                   val_clips: int, device: torch.device) -> dict:
    """What the healed artifact says about its healing: from what, towards what, how, and how it went."""
    measured_on = f"{val_clips} validation clips" if val_clips else f"{train_clips} training clips"
    return {
        "version": RECORD_VERSION,
        "method": "task-agnostic distillation: kept transformer layers trained, everything else frozen",
        "input": source,
        "base": model.meta.get("spec", {}).get("base"),
        "base_model_sha256": model.meta.get("base_model_sha256"),
        "spec": model.meta.get("spec"),
        "kept_layers": model.kept,
        "teacher": dict(cache.teacher, is_base=teacher.is_base),
        "targets": config.targets,
        "target_pairs": [{"teacher_layer": t, "hidden_state": s} for t, s in pairs],
        "loss": "sum over targets of the MSE over valid frames (mimic_train.masked_mse), equal weights",
        "measured_on": measured_on,
        "loss_before": run.history[0]["loss"],
        "loss_after": run.best_loss,
        "terms_before": run.history[0]["terms"],
        "terms_after": run.terms_of(run.best_epoch),
        "epochs": run.epoch,
        "best_epoch": run.best_epoch,
        "selected_by": "validation loss" if val_clips else "training-set loss",
        "config": config.to_dict(),
        "optimizer": "Adam",
        "mode": "eval (no dropout, no layer drop)",
        "frozen": "CNN front end, feature projection, positional convolution, encoder LayerNorm; dropped layers",
        "train_clips": train_clips,
        "val_clips": val_clips,
        "steps": run.steps,
        "seconds": round(run.seconds, 3),
        "device": str(device),
        "cache": dict(cache_id, path=str(cache.directory), layers=cache.layers),
        "history": run.history,
    }


def describe(record: dict) -> str:
    """One line for the command's output: the losses before and after, and the selected epoch."""
    return (f"distillation loss ({record['targets']}) on {record['measured_on']}: {record['loss_before']:.5g} -> "
            f"{record['loss_after']:.5g} (epoch {record['best_epoch']} of {record['epochs']}; teacher "
            f"{Path(record['teacher']['path']).name})")
