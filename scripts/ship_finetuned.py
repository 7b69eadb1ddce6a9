#!/usr/bin/env python3
"""Ship a study's fine-tuned upstream as a package model, with its record (docs/models.md).

    superb-redundancy study run ks_w2v2_8l
    .venv/bin/python scripts/ship_finetuned.py ks_w2v2_8l --name ks_w2v2_8l

evaluates the fine-tuning experiment's dev-best checkpoint (upstream and head) on the test split through s3prl's
runner, then writes ``superb_redundancy/models/<name>.pt`` (the study's exported ``base.pt``) and
``<name>.train.json``: the study file, the downstream config, every train and dev accuracy s3prl logged, the
exported step and the test score with its n. A maintainer's step, run once per shipped model.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _log_series(log: Path) -> dict[str, list[tuple[int, float]]]:
    """s3prl's exp/log.log lines ``train at step N: ACC`` and ``dev at step N: ACC``."""
    series: dict[str, list[tuple[int, float]]] = {"train": [], "dev": []}
    for line in log.read_text().splitlines():
        found = re.match(r"(train|dev) at step (\d+): ([0-9.]+)$", line.strip())
        if found:
            series[found.group(1)].append((int(found.group(2)), float(found.group(3))))
    return series


def _accuracy(folder: Path, split: str) -> tuple[float, int]:
    truth = dict(line.split() for line in (folder / f"{split}_truth.txt").read_text().splitlines() if line)
    predict = dict(line.split() for line in (folder / f"{split}_predict.txt").read_text().splitlines() if line)
    if set(truth) != set(predict):
        raise SystemExit(f"{folder}: {split}_predict.txt and {split}_truth.txt list different clips")
    return sum(predict[k] == truth[k] for k in truth) / len(truth), len(truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study that fine-tuned the model (a file or a shipped study's name; its "
                        "finetune run is done)")
    parser.add_argument("--name", required=True, help="the shipped model's stem, e.g. ks_w2v2_8l")
    parser.add_argument("--upstream", help="the study's upstream name (default: its only upstream)")
    args = parser.parse_args(argv)

    from superb_redundancy.core.files import model_sha256, sha256_file, write_json
    from superb_redundancy.data import tasks
    from superb_redundancy.models.shipped import MODELS_DIR
    from superb_redundancy.study.config import StudyConfig
    from superb_redundancy.study.shipped import study_path

    study_file = study_path(args.study)
    study, problems = StudyConfig.load(study_file)
    if study is None:
        raise SystemExit(f"{args.study}: {'; '.join(problems)}")
    names = [up.name for up in study.upstreams if up.finetune]
    name = args.upstream or (names[0] if len(names) == 1 else None)
    if name not in names:
        raise SystemExit(f"--upstream {args.upstream!r}: valid: {names}")
    up = next(u for u in study.upstreams if u.name == name)
    folder = Path(study.workdir) / "runs" / "finetune" / name
    exp, exported = folder / "exp", folder / "base.pt"
    if not (exp / "dev-best.ckpt").is_file() or not exported.is_file():
        raise SystemExit(f"{folder}: no dev-best.ckpt or base.pt; run `superb-redundancy study run {args.study}` first")

    evaluation = folder / "test_evaluation"
    shutil.rmtree(evaluation, ignore_errors=True)
    command = [sys.executable, str(REPO / "run_downstream.py"), "-m", "evaluate", "-e", str(exp / "dev-best.ckpt"),
               "-t", "test", "-p", str(evaluation)]
    subprocess.run(command, check=True, cwd=REPO)
    test, n_test = _accuracy(evaluation, "test")

    series = _log_series(exp / "log.log")
    best = [int(m) for m in re.findall(r"New best on dev at step (\d+)", (exp / "log.log").read_text())]
    target = MODELS_DIR / f"{args.name}.pt"
    shutil.copyfile(exported, target.with_suffix(".pt.tmp"))
    target.with_suffix(".pt.tmp").replace(target)
    import torch

    start = Path(str(up.base))
    source = MODELS_DIR / f"{start}.pt" if (MODELS_DIR / f"{start}.pt").is_file() else start
    record = {
        "format": "superb_redundancy.shipped/1",
        "what": f"{source.relative_to(REPO) if source.is_relative_to(REPO) else source} fine-tuned as a whole "
                f"(s3prl's -f) on the synthetic corpus's {up.finetune.task} training split",
        "commands": [f"superb-redundancy study run {args.study}",
                     f"python scripts/ship_finetuned.py {args.study} --name {args.name}"],
        "study": study_file.read_text(),
        "downstream_config": tasks.config_path(up.finetune.task, up.finetune.setting or study.setting).read_text(),
        "source": {"path": str(source.relative_to(REPO) if source.is_relative_to(REPO) else source),
                   "sha256": sha256_file(source)},
        "steps": up.finetune.steps,
        "exported_step": best[-1] if best else up.finetune.steps,
        "selected_by": "dev accuracy (s3prl's dev-best.ckpt)",
        "seed": study.seeds[0],
        "dev_accuracy": [[step, acc] for step, acc in series["dev"]],
        "train_accuracy": [[step, acc] for step, acc in series["train"]],
        "test": {"metric": "acc", "value": test, "clips": n_test,
                 "head": f"the fine-tuning experiment's own head (dev-best.ckpt, step {best[-1] if best else '?'})"},
        "versions": {"torch": torch.__version__.split("+")[0], "s3prl": _version("s3prl")},
        "sha256": sha256_file(target),
        "model_sha256": model_sha256(torch.load(target, map_location="cpu", weights_only=True)),
    }
    write_json(target.with_suffix(".train.json"), record)
    print(f"{target}: test accuracy {test:.3f} on {n_test} clips (dev-best step {record['exported_step']})")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
