"""The embedded default job: the whole pipeline on the synthetic corpus with tiny models, on a CPU.

Generate the corpus and tiny checkpoints, write a prune spec (drop one of three layers), then train and
evaluate the unpruned tiny wav2vec2 (s3prl's stock ``wav2vec2_local``) and the pruned one (``pruned_wav2vec2``)
on every SUPERB task through s3prl's own runner, as a user would run ``run_downstream.py``, and tabulate the
test metrics. Finished runs are kept and skipped on the next call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from . import tasks as task_defs
from .prune_spec import PruneSpec
from .results import MetricNotFound, read_test_metric

__all__ = ["Variant", "Run", "run_downstream", "train_and_evaluate", "run_default_job"]


@dataclass(frozen=True)
class Variant:
    label: str
    upstream: str
    ckpt: Optional[str] = None
    model_config: Optional[str] = None
    #: more run_downstream.py training arguments, e.g. ("-f",) to train the upstream too (step 2 of mimicking)
    extra_args: tuple[str, ...] = ()

    def args(self) -> list[str]:
        args = ["-u", self.upstream]
        if self.ckpt:
            args += ["-k", self.ckpt]
        if self.model_config:
            args += ["-g", self.model_config]
        return args + list(self.extra_args)


@dataclass
class Run:
    variant: Variant
    task: str
    expdir: Path
    metric: Optional[float] = None
    error: Optional[str] = None
    extra: dict = field(default_factory=dict)


def run_downstream(args: Sequence[str], log: Path) -> None:
    """One call of our run_downstream.py in a child process (a fresh s3prl, as users run it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "superb_redundancy.downstream_runner", *args]
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"run_downstream.py exited with {result.returncode}: {tail[0]} (log: {log})")


def _checkpoint_to_evaluate(expdir: Path) -> Path:
    best = expdir / "dev-best.ckpt"
    if best.is_file():
        return best
    states = sorted(expdir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[1]))
    if not states:
        raise MetricNotFound(f"{expdir}: training left no states-*.ckpt")
    return states[-1]


def train_and_evaluate(variant: Variant, task: str, corpus_root: Path, expdir: Path, setting: str = "tiny",
                       device: str = "cpu", extra_overrides: Optional[dict] = None) -> float:
    """Train the downstream head on ``variant`` and evaluate on test; returns the test metric.

    A run whose metric is already there is not repeated; a run interrupted before its metric is started afresh.
    """
    try:
        return read_test_metric(expdir, task).value
    except MetricNotFound:
        pass
    if expdir.exists():
        shutil.rmtree(expdir)
    config = task_defs.config_path(task, setting)
    overrides = task_defs.format_overrides({**task_defs.data_overrides(task, corpus_root), **(extra_overrides or {})})
    log = expdir.parent / f"{expdir.name}.log"
    log.unlink(missing_ok=True)
    run_downstream(["-m", "train", *variant.args(), "-d", task, "-c", str(config), "-p", str(expdir),
                    "--device", device, "-o", overrides], log)
    split = "test-clean" if task == "asr" else "test"
    run_downstream(["-m", "evaluate", "-e", str(_checkpoint_to_evaluate(expdir)), "-t", split,
                    "--device", device], log)
    return read_test_metric(expdir, task).value


SUPERB_TASKS = ("speech_commands", "voxceleb1", "emotion", "asr")


def run_default_job(workdir: Path, tasks: Sequence[str] = SUPERB_TASKS, corpus_scale: float = 1.0,
                    device: str = "cpu") -> list[Run]:
    """Corpus + tiny models + one pruned variant, trained and evaluated on ``tasks``; returns the runs."""
    from .corpus import generate
    from .tiny_models import write_all

    workdir = Path(workdir).resolve()
    for task in tasks:
        task_defs.get_task(task)
    print(f"[1/4] synthetic corpus -> {workdir / 'data'}", flush=True)
    generate(workdir / "data", tasks=sorted({task_defs.get_task(t).corpus_task for t in tasks}), scale=corpus_scale)
    print(f"[2/4] tiny checkpoints -> {workdir / 'models'}", flush=True)
    checkpoints = write_all(workdir / "models")
    base = str(checkpoints["wav2vec2"])
    spec = PruneSpec(base=base, drop_layers=[1], notes={"why": "embedded default: one of three layers dropped"})
    spec_path = spec.to_yaml(workdir / "specs" / "tiny_wav2vec2_drop1.yaml")
    variants = [
        Variant("wav2vec2 (3 layers)", "wav2vec2_local", ckpt=base),
        Variant("pruned_wav2vec2 (drop 1)", "pruned_wav2vec2", model_config=str(spec_path)),
    ]
    runs = [Run(v, t, workdir / "exp" / v.upstream / t) for v in variants for t in tasks]
    print(f"[3/4] {len(runs)} downstream runs through s3prl's runner (logs: {workdir / 'exp'})", flush=True)
    for run in tqdm(runs, desc="downstream runs", unit="run"):
        try:
            run.metric = train_and_evaluate(run.variant, run.task, workdir / "data", run.expdir, device=device)
        except Exception as error:  # one failed run must not lose the others
            run.error = str(error)
            tqdm.write(f"  FAILED {run.variant.label} / {run.task}: {error}")
    return runs


def build_leaderboard(workdir: Path, output: Path, repeats: int = 5):
    """Harvest the job's experiments into records, profile each variant, write the leaderboard; the frame."""
    from .harvest import harvest
    from .leaderboard import build, variant_profile, write_leaderboard

    records, problems = harvest([Path(workdir) / "exp"], Path(workdir) / "records")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    frame = build(records, profile=lambda r: variant_profile(r, repeats=repeats))
    written = write_leaderboard(frame, output)
    return frame, written


def format_runs(runs: Sequence[Run]) -> str:
    """One row per task, one column per variant, with the metric's name and direction."""
    from tabulate import tabulate

    variants = list(dict.fromkeys(r.variant.label for r in runs))
    rows = []
    for task in dict.fromkeys(r.task for r in runs):
        definition = task_defs.get_task(task)
        row = [f"{definition.title} ({task})", f"{definition.metric} {'↑' if definition.higher_is_better else '↓'}"]
        for label in variants:
            run = next(r for r in runs if r.task == task and r.variant.label == label)
            row.append("failed" if run.metric is None else f"{run.metric:.4f}")
        rows.append(row)
    return tabulate(rows, headers=["task", "metric", *variants], tablefmt="github")
