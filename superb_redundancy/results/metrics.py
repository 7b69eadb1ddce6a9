"""Read the test metric of an s3prl downstream experiment directory.

Where each task leaves its metric (s3prl 0.4.18):
- speech_commands, voxceleb1, emotion: ``expdir/log.log`` gets ``test at step N: X`` (N = 0 in evaluate mode),
  an accuracy in [0, 1];
- asr: only stdout and ``<split>-noLM-{hyp,ref}.ark`` (``<uttid> <WORDS>`` lines), so the WER is recomputed
  from the ark files, in percent.

The metric's name and direction per task are the task table's (:data:`superb_redundancy.data.tasks.TASKS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from superb_redundancy.data.tasks import get_task
from superb_redundancy.core.errors import InputNotFound

__all__ = ["Metric", "read_test_metric", "read_test_items", "word_error_rate", "MetricNotFound"]


class MetricNotFound(InputNotFound):
    """The experiment has no test metric (yet): not evaluated, interrupted, or not an s3prl expdir."""


@dataclass(frozen=True)
class Metric:
    task: str
    name: str
    value: float
    higher_is_better: bool
    step: Optional[int] = None


_LOG_LINE = re.compile(r"^test(?:_fold\d+)? at step (\d+): ([-+0-9.eE]+)\s*$")


def _read_log_metric(expdir: Path, task: str) -> Metric:
    log = expdir / "log.log"
    if not log.is_file():
        raise MetricNotFound(f"{expdir}: no log.log (the experiment was not evaluated on test)")
    found = None
    for line in log.read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(line.strip())
        if match:
            found = (int(match.group(1)), float(match.group(2)))
    if found is None:
        raise MetricNotFound(f"{expdir}/log.log has no 'test at step N: X' line")
    step, value = found
    definition = get_task(task)
    return Metric(task, definition.metric, value, definition.higher_is_better, step)


def _read_ark(path: Path) -> dict[str, list[str]]:
    rows = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            utt, _, words = line.partition(" ")
            rows[utt] = words.split()
    return rows


def word_error_rate(hyp: dict[str, list[str]], ref: dict[str, list[str]]) -> float:
    """Corpus WER in percent: word edit distance summed over utterances / reference words."""
    import editdistance

    missing = sorted(set(ref) - set(hyp))
    if missing:
        raise ValueError(f"{len(missing)} reference utterance(s) have no hypothesis, e.g. {missing[0]}")
    words = sum(len(r) for r in ref.values())
    if words == 0:
        raise ValueError("the reference transcripts hold no words")
    errors = sum(editdistance.eval(hyp[utt], ref[utt]) for utt in ref)
    return 100.0 * errors / words


def _read_asr_metric(expdir: Path, split: str = "test-clean") -> Metric:
    hyp_path, ref_path = expdir / f"{split}-noLM-hyp.ark", expdir / f"{split}-noLM-ref.ark"
    if not (hyp_path.is_file() and ref_path.is_file()):
        raise MetricNotFound(f"{expdir}: no {hyp_path.name} / {ref_path.name} (not evaluated on {split})")
    definition = get_task("asr")
    return Metric("asr", definition.metric, word_error_rate(_read_ark(hyp_path), _read_ark(ref_path)),
                  definition.higher_is_better)


def read_test_metric(expdir: str | Path, task: str) -> Metric:
    """The test metric of one s3prl experiment directory."""
    expdir = Path(expdir)
    get_task(task)  # ValueError naming the valid tasks
    if task == "asr":
        return _read_asr_metric(expdir)
    return _read_log_metric(expdir, task)


def _read_labels(path: Path) -> dict[str, str]:
    """``<item id> <label>`` lines (the label is the last word; an id may hold spaces)."""
    rows = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            item, _, label = line.rstrip().rpartition(" ")
            rows[item] = label
    return rows


def _accuracy_items(predict: Path, truth: Path):
    from superb_redundancy.statistics.evidence import TestItems

    predicted, truths = _read_labels(predict), _read_labels(truth)
    if set(predicted) != set(truths):
        raise ValueError(f"{predict.name} and {truth.name} list different items")
    ids = tuple(sorted(truths))
    return TestItems("accuracy", ids, correct=tuple(int(predicted[i] == truths[i]) for i in ids),
                     truth=tuple(truths[i] for i in ids))


def read_test_items(expdir: str | Path, task: str) -> list:
    """The per-item test outcomes of an evaluated experiment, one :class:`~superb_redundancy.statistics.evidence.TestItems`
    per test set (emotion: per fold evaluated; every other task: one).

    KS / SID / ER: ``test[_foldN]_predict.txt`` against ``test[_foldN]_truth.txt``; ASR: per-utterance word (and
    character) edit distances of ``test-clean-noLM-hyp.ark`` against ``-ref.ark``.
    """
    import editdistance

    from superb_redundancy.statistics.evidence import TestItems

    expdir = Path(expdir)
    get_task(task)  # ValueError naming the valid tasks
    if task == "asr":
        hyp_path, ref_path = expdir / "test-clean-noLM-hyp.ark", expdir / "test-clean-noLM-ref.ark"
        if not (hyp_path.is_file() and ref_path.is_file()):
            raise MetricNotFound(f"{expdir}: no {hyp_path.name} / {ref_path.name}")
        hyp, ref = _read_ark(hyp_path), _read_ark(ref_path)
        missing = sorted(set(ref) - set(hyp))
        if missing:
            raise ValueError(f"{len(missing)} reference utterance(s) have no hypothesis, e.g. {missing[0]}")
        ids = tuple(sorted(ref))
        return [TestItems("wer", ids, errors=tuple(editdistance.eval(hyp[i], ref[i]) for i in ids),
                          ref_words=tuple(len(ref[i]) for i in ids),
                          char_errors=tuple(editdistance.eval(" ".join(hyp[i]), " ".join(ref[i])) for i in ids),
                          ref_chars=tuple(len(" ".join(ref[i])) for i in ids))]
    pairs = sorted(expdir.glob("test_fold*_predict.txt")) if task == "emotion" else []
    if not pairs:
        pairs = [expdir / "test_predict.txt"]
    items = []
    for predict in pairs:
        truth = predict.with_name(predict.name.replace("_predict.txt", "_truth.txt"))
        if not (predict.is_file() and truth.is_file()):
            raise MetricNotFound(f"{expdir}: no {predict.name} / {truth.name} (not evaluated on test)")
        items.append(_accuracy_items(predict, truth))
    return items
