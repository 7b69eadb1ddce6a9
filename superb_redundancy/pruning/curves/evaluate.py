"""An experiment's trained Featurizer and head run on pruned upstreams, batched as s3prl's evaluate does.

:func:`evaluate_shared` scores every variant with shared computation (:class:`SharedPrunedForward`),
:func:`evaluate_end_to_end` each variant separately (the reference), :func:`evaluate_upstream` any upstream;
:func:`similarity_on_split` measures the layer similarity the score objectives order layers by.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from superb_redundancy.analysis.report import SimilaritySettings, accumulate, report_from_matrices
from superb_redundancy.core.audio import frame_lengths
from superb_redundancy.pruning.curves.experiment import Experiment, test_loader
from superb_redundancy.pruning.curves.shared_forward import (Mask, SharedPrunedForward, _dropped, _mask,
                                                             as_upstream_output, layers_dropped)

__all__ = ["evaluate_shared", "evaluate_upstream", "evaluate_end_to_end", "similarity_on_split"]


def _evaluate_steps(experiment: Experiment, loader) -> int:
    ratio = float(experiment.config.get("runner", {}).get("evaluate_ratio", 1))
    return round(len(loader) * ratio)


def _seed_like_runner(experiment: Experiment) -> None:
    seed = getattr(experiment.args, "seed", 1337)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(experiment: Experiment, loader, desc: str, progress: bool, leave: bool = True,
             all_batches: bool = False):
    """(batch_id, wavs on device, other fields) as s3prl's Runner.evaluate iterates the test loader."""
    steps = _evaluate_steps(experiment, loader)
    for batch_id, (wavs, *others) in enumerate(tqdm(loader, desc=desc, total=len(loader), disable=not progress,
                                                    leave=leave, unit="batch")):
        if batch_id > steps and not all_batches:  # s3prl's condition (evaluate_steps + 1 batches when ratio < 1)
            break
        yield batch_id, [torch.FloatTensor(wav).to(experiment.device) for wav in wavs], others


def _outcomes(records: Mapping[Mask, dict]) -> dict[Mask, list[float]]:
    outcomes = {mask: list(r["acc"]) for mask, r in records.items()}
    sizes = {len(v) for v in outcomes.values()}
    if len(sizes) != 1:
        raise RuntimeError(f"variants saw different numbers of test samples: {sorted(sizes)}")
    return outcomes


def evaluate_shared(experiment: Experiment, masks: Sequence[Mask], loader=None, progress: bool = True,
                    engine: Optional[SharedPrunedForward] = None,
                    truth: Optional[list] = None) -> dict[Mask, list[float]]:
    """Per-sample test outcomes (the expert's ``records["acc"]``) of every variant, with shared computation.

    ``truth``, if given, is filled with the test items' reference labels (for the majority-class chance level).
    """
    masks = list(dict.fromkeys(masks))
    loader = test_loader(experiment) if loader is None else loader
    engine = engine or SharedPrunedForward(experiment.expert, experiment.family)
    records = {mask: defaultdict(list) for mask in masks}
    _seed_like_runner(experiment)
    with torch.no_grad():
        for batch_id, wavs, others in _batches(experiment, loader, f"test, {len(masks)} variants (shared)", progress):
            for mask, hidden in engine.run(wavs, masks):
                features = experiment.featurizer(wavs, as_upstream_output(hidden))
                experiment.downstream("test", features, *others, records=records[mask], batch_id=batch_id)
    if truth is not None:
        first = records[masks[0]]
        truth.extend(first.get("truth") or first.get("truth_speaker") or [])
    return _outcomes(records)


def evaluate_upstream(experiment: Experiment, upstream: nn.Module, split: str = "test", loader=None,
                      progress: bool = True, leave: bool = True) -> dict:
    """The expert's records (``records["acc"]``: one outcome per item) of any ``upstream`` returning the hidden
    states the experiment's Featurizer reads, through its trained Featurizer and head, on one split, batched as
    s3prl's evaluate does (the mimicker's accuracy in step 1 uses it, :mod:`superb_redundancy.mimic.train`)."""
    loader = experiment.downstream.get_dataloader(split) if loader is None else loader
    records = defaultdict(list)
    _seed_like_runner(experiment)
    with torch.no_grad():
        for batch_id, wavs, others in _batches(experiment, loader, split, progress, leave=leave):
            features = experiment.featurizer(wavs, upstream(wavs))
            experiment.downstream(split, features, *others, records=records, batch_id=batch_id)
    return records


def evaluate_end_to_end(experiment: Experiment, masks: Sequence[Mask], loader=None, progress: bool = True
                        ) -> dict[Mask, list[float]]:
    """The naive reference: each variant separately, its pruned upstream run end to end on every batch."""
    masks = list(dict.fromkeys(masks))
    loader = test_loader(experiment) if loader is None else loader
    records = {}
    for mask in tqdm(masks, desc="variants (end to end)", disable=not progress, unit="variant"):
        with layers_dropped(experiment.expert, experiment.family, _dropped(mask)) as upstream:
            records[mask] = evaluate_upstream(experiment, upstream, "test", loader, progress, leave=False)
    return _outcomes(records)


def similarity_on_split(experiment: Experiment, settings=None, dropped: Sequence[int] = (), loader=None,
                        progress: bool = True, engine: Optional[SharedPrunedForward] = None, split: str = "dev"):
    """A :class:`~superb_redundancy.analysis.report.SimilarityReport` of the upstream (with ``dropped`` layers dropped;
    none: the unpruned model) over one split's audio exactly as the expert's dataloader yields it.

    The default is the **dev** split (the paper's code takes its similarities from validation batches): the
    pruning order must not come from the test items it is then scored on. The split is recorded in the source.
    """
    settings = settings or SimilaritySettings()
    loader = experiment.downstream.get_dataloader(split) if loader is None else loader
    engine = engine or SharedPrunedForward(experiment.expert, experiment.family)
    mask = _mask(dropped, experiment.num_layers)
    rate = experiment.expert.get_downsample_rates("hidden_states")
    desc = f"similarity ({split}{', dropped ' + str(sorted(dropped)) if dropped else ''})"

    def batches():
        with torch.no_grad():
            for _, wavs, _ in _batches(experiment, loader, desc, progress, all_batches=True):
                if settings.max_seconds is not None:
                    wavs = [w[: int(settings.max_seconds * 16000)] for w in wavs]
                for _, hidden in engine.run(wavs, [mask]):
                    lengths = frame_lengths([len(w) for w in wavs], hidden[0].size(1), rate)
                    yield [h.float().cpu() for h in hidden], lengths

    matrices, num_samples = accumulate(batches(), settings)
    source = {"upstream": experiment.args.upstream, "ckpt": getattr(experiment.args, "upstream_ckpt", None),
              "data": f"{split} split of {experiment.checkpoint}", "split": split, "dropped_layers": sorted(dropped)}
    return report_from_matrices(matrices, settings, num_samples, source)
