"""The paper study at real size on this machine (scripts/rehearse_paper.sh runs it): wav2vec2 Base and Large with
random weights, a few hundred clips, every stage but the curves; then per run kind what it took (time, peak host
memory, disk) beside what ``study status --estimate`` predicts for the same runs, with the throughput measured here
(``--calibrate``). Writes the table to ``<workdir>/rehearsal.md`` and prints it.

    python scripts/rehearse_paper.py [--workdir work/rehearse-real-size]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "superb_redundancy" / "studies" / "paper.yaml"
REAL_SIZE = ROOT / "superb_redundancy" / "studies" / "rehearsals" / "paper_real_size.yaml"
MODELS = {"wav2vec2-base": "wav2vec2_base", "wav2vec2-large": "wav2vec2_large"}


def _bases(workdir: Path) -> Path:
    """The random-weight checkpoints and the override that makes them the study's bases."""
    from superb_redundancy.models.architectures import write_architecture_checkpoint

    folder = workdir / "architectures"
    paths = {}
    for name, architecture in MODELS.items():
        path = folder / f"{architecture}.pt"
        if not path.is_file():
            write_architecture_checkpoint(architecture, path)
        paths[name] = str(path.resolve())
    override = workdir / "bases.yaml"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text(yaml.safe_dump({"workdir": str(workdir.resolve()),
                                        "upstreams": [{"name": n, "base": p} for n, p in paths.items()]}))
    return override


def _du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024 ** 3 if path.exists() else 0.0


def _measured(study, workdir: Path) -> dict[str, dict]:
    """Per run kind: runs, hours, the largest peak host memory (the run's process or its s3prl child), disk."""
    from superb_redundancy.study.plan import expand

    kinds: dict[str, dict] = {}
    for run in expand(study):
        state = json.loads((workdir / "state" / f"{run.run_id}.json").read_text())
        if state.get("status") != "done":
            raise SystemExit(f"{run.run_id} is {state.get('status')}: {state.get('error', '')}")
        peak = state.get("peak_memory_gb") or {}
        host = max(v for v in (peak.get("host"), peak.get("children"), 0.0) if v is not None)
        row = kinds.setdefault(run.kind, {"runs": 0, "hours": 0.0, "host_gb": 0.0, "disk_gb": 0.0})
        row["runs"] += 1
        row["hours"] += (state["finished"] - state["started"]) / 3600
        row["host_gb"] = max(row["host_gb"], host)
        row["disk_gb"] += _du(run.folder(workdir))
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="work/rehearse-real-size")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    override = _bases(workdir)
    command = [sys.executable, "-m", "superb_redundancy.cli", "study", "run", str(PAPER), "--override",
               str(REAL_SIZE), "--override", str(override)]
    print("$", " ".join(command[2:]), flush=True)
    started = time.time()
    subprocess.run(command, check=True)
    print(f"the study took {(time.time() - started) / 60:.1f} min", flush=True)

    from tabulate import tabulate

    from superb_redundancy.study.config import StudyConfig
    from superb_redundancy.study.estimate import calibrate, estimate, summarize

    study = StudyConfig.from_yaml(PAPER, [REAL_SIZE, override])
    throughput = calibrate("cpu")
    predicted = {row["kind"]: row for row in summarize(estimate(study, throughput))}
    measured = _measured(study, workdir)
    rows = []
    for kind, got in measured.items():
        want = predicted[kind]
        rows.append([kind, got["runs"], f"{got['hours'] * 60:.1f}", f"{want['device_hours'] * 60:.1f}",
                     f"{got['host_gb']:.1f}", f"{want['host_gb']:.1f}", f"{got['disk_gb']:.2f}",
                     f"{want['disk_gb']:.2f}"])
    table = tabulate(rows, headers=["runs of kind", "count", "minutes", "estimated", "peak host GB", "estimated",
                                    "disk GB", "estimated"], tablefmt="github")
    text = f"{throughput.describe()}\n\n{table}\n"
    (workdir / "rehearsal.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
