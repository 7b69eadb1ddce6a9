"""Harvest s3prl experiment directories into run records (one JSON file per run, written atomically).

A record says what was run (upstream, its checkpoint / spec and their hashes, task, fold, seed, config), what the
variant is (its :class:`~superb_redundancy.core.variant.VariantDescription`, read from its artifact or spec by
:func:`describe_variant`), what the head read (:class:`Reading`) and what came out (the test metric, the
training step evaluated, when). Malformed, partial or duplicate
experiments give a warning naming the directory and what is wrong; they never stop the collection and never
leave a half-written record.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Sequence

import yaml

from superb_redundancy.core.files import file_sha256, write_json
from superb_redundancy.core.variant import VariantDescription, VariantError, VariantKind
from superb_redundancy.data.tasks import TASKS
from superb_redundancy.hub.experiment_checkpoint import read_experiment_checkpoint
from superb_redundancy.results.metrics import MetricNotFound, read_test_items, read_test_metric
from superb_redundancy.results.variants import HarvestError, describe_variant, model_identity
from superb_redundancy.core.errors import UserError

__all__ = ["RunRecord", "Reading", "HarvestError", "harvest_expdir", "harvest", "load_records", "validate_record",
           "reconcile", "model_identity", "variant_key", "describe_variant"]


@dataclass(frozen=True)
class Reading:
    """What the downstream head read (``reads``: None for s3prl's weighted sum of every hidden state) and, for a
    mimicker, which step 2 trained it (:mod:`superb_redundancy.study.mimic_step2`: ``step2``, and for the paper's
    the head it started from and the early-stopping patience). About the run, not the variant."""

    reads: Optional[str] = None
    step2: Optional[str] = None
    head_init: Optional[str] = None
    patience: Optional[int] = None

    @classmethod
    def from_dict(cls, data, source: str = "record") -> "Reading":
        if not isinstance(data, dict) or set(data) - {f.name for f in fields(cls)}:
            raise UserError(f"{source}: reading {data!r} is invalid; valid: a mapping of "
                            f"{[f.name for f in fields(cls)]}")
        for name in ("reads", "step2", "head_init"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise UserError(f"{source}: reading {name} {data[name]!r} is not a string")
        return cls(**data)


@dataclass
class RunRecord:
    record_id: str
    expdir: str
    task: str
    upstream: str
    upstream_ckpt: Optional[str]
    upstream_model_config: Optional[str]
    upstream_sha256: Optional[str]  # of the -k file
    model_config_sha256: Optional[str]  # of the -g file (a prune spec for our pruned upstreams)
    variant: str  # upstream + hashes: what the leaderboard groups by
    metric: str
    value: float
    higher_is_better: bool
    seed: Optional[int]
    config: Optional[str]
    config_sha256: Optional[str]
    step: Optional[int]  # training step of the evaluated checkpoint
    evaluated_at: str
    fold: Optional[str] = None  # emotion: fold1..fold5, or "mean of 5 folds"
    #: what the variant is: kind, family, base, dropped layers, objective, healing, mimic setup
    description: Optional[VariantDescription] = None
    #: what the head read, and which step 2 trained a mimicker's
    reading: Reading = field(default_factory=Reading)
    #: where the downstream head came from when it was trained on another upstream (head.json), else None
    head: Optional[dict] = None
    #: the per-item test outcomes the value rests on (evidence.TestItems.to_dict, one per fold evaluated)
    items: list = field(default_factory=list)
    #: test items the value rests on
    n: Optional[int] = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["description"] = None if self.description is None else self.description.to_dict()
        data["reading"] = asdict(self.reading)
        return data

    @classmethod
    def from_dict(cls, data, source: str = "record") -> "RunRecord":
        """A record of its JSON; UserError names the source and what is wrong (an older record: harvest again)."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: not a JSON object")
        if data.get("description") is None:
            raise UserError(f"{source}: no variant description (harvested by an older version? harvest it again)")
        try:
            description = VariantDescription.from_dict(data["description"], source)
        except VariantError as error:
            raise UserError(str(error)) from None
        reading = Reading.from_dict(data.get("reading") or {}, source)
        try:
            return cls(**{**data, "description": description, "reading": reading})
        except TypeError as error:
            raise UserError(f"{source}: {error}") from None


def variant_key(upstream: str, ckpt_sha: Optional[str], config_sha: Optional[str],
                reads: Optional[str] = None) -> str:
    """What the leaderboard groups by: the upstream, its -k and -g by content, and what the head reads when it is
    not s3prl's weighted sum of every hidden state (``s:last_hidden_state``)."""
    parts = [upstream] + [f"{name}:{sha[:12]}" for name, sha in (("k", ckpt_sha), ("g", config_sha)) if sha]
    return " ".join(parts + ([f"s:{reads}"] if reads else []))


def _reading(description: VariantDescription, args: dict, configs: list) -> Reading:
    """What the head read and, for a mimicker, which step 2 trained it (:mod:`superb_redundancy.study.mimic_step2`)."""
    selection = args.get("upstream_feature_selection") or "hidden_states"
    layer = args.get("upstream_layer_selection")
    reads = None if selection == "hidden_states" and layer is None else \
        (selection if layer is None else f"{selection}[{layer}]")
    if description.kind is not VariantKind.MIMIC:
        return Reading(reads=reads)
    runner = ((configs[0][1] if configs else {}) or {}).get("runner") or {}
    paper = reads == "last_hidden_state" and runner.get("early_stopping_patience") is not None
    step2 = "paper" if paper else "weighted_sum" if reads is None else f"reads {reads}"
    if not paper:
        return Reading(reads=reads, step2=step2)
    return Reading(reads=reads, step2=step2, head_init=args.get("init_ckpt"),
                   patience=runner["early_stopping_patience"])


def _yaml_calls(expdir: Path, prefix: str) -> list[tuple[Path, dict]]:
    calls = []
    for path in sorted(expdir.glob(f"{prefix}_*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise HarvestError(f"{path.name} is not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise HarvestError(f"{path.name} does not hold s3prl's arguments")
        calls.append((path, data))
    return calls


def _evaluated_step(checkpoint: Optional[str]) -> Optional[int]:
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    import torch

    try:  # mmap: only the small "Step" entry is read, not the weights
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("Step"))
    except Exception:
        stem = Path(checkpoint).stem
        return int(stem.split("-")[1]) if stem.startswith("states-") else None


def harvest_expdir(expdir: str | Path) -> RunRecord:
    """The record of one evaluated s3prl experiment; HarvestError says why there is none."""
    expdir = Path(expdir)
    calls = _yaml_calls(expdir, "args")
    if not calls:
        raise HarvestError("no args_*.yaml: not an s3prl experiment directory")
    train = [a for _, a in calls if a.get("mode") == "train"]
    evaluate = [a for _, a in calls if a.get("mode") == "evaluate"]
    first = (train or [calls[0][1]])[0]
    last = (evaluate or [calls[-1][1]])[-1]
    task = first.get("downstream")
    if not task or not first.get("upstream"):
        raise HarvestError("args_*.yaml names no downstream or upstream")
    identities = {_upstream_identity(a) for _, a in calls}
    if len(identities) > 1:
        # s3prl appends every evaluation to one log.log: which line belongs to which upstream cannot be told
        names = ", ".join(sorted({str(i[0]) for i in identities}))
        raise HarvestError(f"its calls name different upstreams ({names}), so its scores cannot be attributed; "
                           "evaluate each upstream into its own folder (run_downstream.py -m evaluate -e CKPT "
                           "-u NAME ... -p DIR)")
    try:
        metric = read_test_metric(expdir, task)
        items = read_test_items(expdir, task)
    except MetricNotFound as error:
        raise HarvestError(f"no test metric yet ({error})") from None
    except ValueError as error:
        raise HarvestError(str(error)) from None
    from_items = sum(i.value for i in items) / len(items)
    if not math.isclose(from_items, metric.value, rel_tol=1e-5, abs_tol=1e-6):
        raise HarvestError(f"its logged test {metric.name} {metric.value:.6g} disagrees with its predictions "
                           f"({from_items:.6g}): evaluated twice with different checkpoints?")
    upstream, ckpt, model_config = first["upstream"], first.get("upstream_ckpt"), first.get("upstream_model_config")
    ckpt_sha, config_sha = model_identity(ckpt), file_sha256(model_config)
    configs = _yaml_calls(expdir, "config")
    description = describe_variant(ckpt, model_config)
    reading = _reading(description, first, configs)
    config_text = json.dumps(configs[0][1], sort_keys=True) if configs else None
    fold = None
    if task == "emotion" and configs:
        fold = configs[0][1].get("downstream_expert", {}).get("datarc", {}).get("test_fold")
    log = expdir / ("log.log" if task != "asr" else "test-clean-noLM-hyp.ark")
    when = datetime.fromtimestamp(log.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
    record_id = hashlib.sha1(str(expdir.resolve()).encode()).hexdigest()[:16]
    return RunRecord(
        record_id=record_id, expdir=str(expdir.resolve()), task=task, upstream=upstream, upstream_ckpt=ckpt,
        upstream_model_config=model_config, upstream_sha256=ckpt_sha, model_config_sha256=config_sha,
        variant=variant_key(upstream, ckpt_sha, config_sha, reading.reads), metric=metric.name, value=metric.value,
        higher_is_better=metric.higher_is_better, seed=first.get("seed"), config=first.get("config"),
        config_sha256=hashlib.sha256(config_text.encode()).hexdigest() if config_text else None,
        step=_evaluated_step(last.get("init_ckpt")), evaluated_at=when, fold=fold, description=description,
        reading=reading,
        head=_head_record(expdir), items=[i.to_dict() for i in items], n=sum(i.n for i in items),
    )


def _upstream_identity(args: dict) -> tuple:
    """What a call evaluated: upstream name and its -k / -g (by content where the files exist)."""
    ckpt, config = args.get("upstream_ckpt"), args.get("upstream_model_config")
    return (args.get("upstream"), model_identity(ckpt) or ckpt, file_sha256(config) or config)


def _head_record(expdir: Path) -> Optional[dict]:
    """``head.json`` of a folder evaluated with another upstream than its head's (downstream_runner)."""
    path = expdir / "head.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HarvestError(f"head.json is not valid JSON ({error})") from None
    return data.get("head") if isinstance(data, dict) else None


def _candidate_dirs(roots: Iterable[str | Path]) -> list[Path]:
    found = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            warnings.warn(f"harvest: {root} does not exist", stacklevel=3)
            continue
        for args in root.rglob("args_*.yaml"):
            found.add(args.parent)
    return sorted(found)


def harvest(roots: Iterable[str | Path], records_dir: str | Path) -> tuple[list[RunRecord], list[str]]:
    """Record every evaluated experiment under ``roots`` into ``records_dir``; returns (records, warnings).

    The records folder is reconciled: a re-harvested experiment replaces its record (records are keyed by the
    experiment folder), two experiments of the same run (same variant, task, fold, seed, config) count once (the
    newer is kept), and a record whose experiment folder is gone is removed, with a notice.
    """
    records_dir = Path(records_dir)
    records: list[RunRecord] = []
    problems: list[str] = []
    seen: dict[tuple, RunRecord] = {}
    for expdir in _candidate_dirs(roots):
        try:
            record = harvest_expdir(expdir)
        except HarvestError as error:
            problems.append(f"skipping {expdir}: {error}")
            continue
        except Exception as error:  # anything unforeseen in one directory must not stop the rest
            problems.append(f"skipping {expdir}: {type(error).__name__}: {error}")
            continue
        identity = _run_identity(record)
        if identity in seen:
            other = seen[identity]
            newer, older = (record, other) if record.evaluated_at >= other.evaluated_at else (other, record)
            problems.append(f"duplicate run {older.expdir} of {newer.expdir} (same upstream, task, fold, seed, "
                            f"config); keeping the newer one")
            if newer is record:
                records.remove(other)
            else:
                continue
        seen[identity] = record
        records.append(record)
    problems += reconcile(records_dir, records)
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    return records, problems


def _run_identity(record: RunRecord) -> tuple:
    return (record.variant, record.task, record.fold, record.seed, record.config_sha256)


def reconcile(records_dir: str | Path, records: Sequence[RunRecord] = ()) -> list[str]:
    """Write ``records`` into the folder and drop what is stale there; returns the notices.

    One pass over the other records: one whose experiment folder is gone is removed, and so is an older record of
    a run harvested again now (the same run from another folder gives way to the fresh record)."""
    records_dir = Path(records_dir)
    notices = []
    for record in records:
        write_json(records_dir / f"{record.record_id}.json", record.to_dict())
    fresh = {_run_identity(record): f"{record.record_id}.json" for record in records}
    fresh_ids = {record.record_id for record in records}
    for path in sorted(records_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # load_records names it
        if not isinstance(data, dict) or data.get("record_id") in fresh_ids:
            continue
        expdir = data.get("expdir")
        if isinstance(expdir, str) and not Path(expdir).is_dir():
            path.unlink()
            notices.append(f"removed record {path.name}: its experiment {expdir} is gone")
            continue
        try:
            twin = fresh.get(_run_identity(RunRecord.from_dict(data, str(path))))
        except UserError:
            continue
        if twin is not None:
            path.unlink()
            notices.append(f"removed record {path.name}: a duplicate of {twin} (same run, harvested again)")
    return notices


def validate_record(data, source: str) -> RunRecord:
    """A record read back from JSON, checked; ValueError names the file, the field and the bad value."""
    record = RunRecord.from_dict(data, source)
    if record.task not in TASKS:
        raise UserError(f"{source}: unknown task {record.task!r}; valid: {sorted(TASKS)}")
    value = record.value
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{source}: value {value!r} is not a finite number")
    metric = TASKS[record.task].metric
    if metric == "acc" and not 0.0 <= value <= 1.0:
        raise UserError(f"{source}: value {value!r} is outside [0, 1] for an accuracy")
    if metric == "wer" and value < 0:
        raise UserError(f"{source}: value {value!r} is a negative WER")
    if not record.items:
        raise UserError(f"{source}: no per-item outcomes (harvested by an older version? harvest it again)")
    from superb_redundancy.statistics.evidence import TestItems

    try:
        items = [TestItems.from_dict(i) for i in record.items]
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{source}: bad per-item outcomes ({error})") from None
    from_items = sum(i.value for i in items) / len(items)
    if not math.isclose(from_items, value, rel_tol=1e-5, abs_tol=1e-6):
        raise UserError(f"{source}: value {value!r} disagrees with its items ({from_items:.6g})")
    return record


def load_records(records_dir: str | Path) -> list[RunRecord]:
    """Every valid record in the folder; each invalid one is skipped with a warning naming the file and value.
    A record written before variant descriptions is harvested again from its experiment folder, if that is still
    there (a study's done runs keep their place on the leaderboard across the upgrade)."""
    _harvest_older_again(Path(records_dir))
    records = []
    for path in sorted(Path(records_dir).glob("*.json")):
        try:
            records.append(validate_record(json.loads(path.read_text()), str(path)))
        except UnicodeDecodeError:
            warnings.warn(f"skipping record {path}: not a text file", stacklevel=2)
        except json.JSONDecodeError as error:
            warnings.warn(f"skipping record {path}: not valid JSON ({error})", stacklevel=2)
        except ValueError as error:
            warnings.warn(f"skipping record {error}", stacklevel=2)
    return records


def _harvest_older_again(records_dir: Path) -> None:
    for path in sorted(records_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # load_records names it
        if not isinstance(data, dict) or data.get("description") is not None:
            continue
        expdir = data.get("expdir")
        if not isinstance(expdir, str) or not Path(expdir).is_dir():
            continue
        try:
            record = harvest_expdir(expdir)
        except HarvestError:
            continue  # its "no variant description" warning stands
        fresh = path.with_name(f"{record.record_id}.json")
        write_json(fresh, record.to_dict())
        if fresh != path:
            path.unlink()
        warnings.warn(f"record {path.name}: written before variant descriptions; harvested again from {expdir}",
                      stacklevel=3)
