"""``superb-redundancy main`` and ``superb-redundancy study``: a whole study from one YAML file."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from superb_redundancy.core.errors import UserError

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("main", help="the embedded default study: synthetic corpus, tiny models, CPU",
                       description="Run the shipped study embedded_default (or --study FILE): the README's main command.")
    p.add_argument("--study", help="another study (a file, or a shipped study's name) instead of embedded_default")
    _add_overrides(p, "")
    p.set_defaults(func=_cmd_main, flush_denormals=True)

    p = sub.add_parser("study", help="run a study file (resumable; local or Slurm), or show its status",
                       description="Expand a study YAML into runs and run them (resumable), or list their status.")
    p.add_argument("action", choices=["run", "status", "cancel"],
                   help="run: run what is not done; status: list the runs (on Slurm: what each asks for, its job "
                        "and the job's state); cancel: cancel the study's Slurm jobs that are queued or running")
    p.add_argument("study", help="a study YAML, or a shipped study's name (paper, paper_superb, embedded_default, ...)")
    p.add_argument("--executor", choices=["local", "slurm"], help="override the study's executor.kind")
    p.add_argument("--estimate", action="store_true",
                   help="status: what the runs cost, before any runs (device hours, memory, disk), offline")
    p.add_argument("--calibrate", action="store_true",
                   help="status --estimate: measure this machine's throughput on --device (a few real steps of a "
                        "real-size model) instead of assuming one")
    _add_overrides(p, "run: ")
    p.set_defaults(func=_cmd_study, flush_denormals=True)


def _add_overrides(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument("--override", action="append", default=[], metavar="FILE",
                   help="a YAML file of study keys merged over the study, or a shipped one's name "
                        "(rehearsals/paper_cpu); repeatable; upstreams merge by name, name '*' into every upstream")
    p.add_argument("--workdir", help="override the study's workdir")
    p.add_argument("--leaderboard", help="override where the leaderboard goes")
    p.add_argument("--device", help="override the study's device: auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--wait", action="store_true", help=f"{prefix}wait while another runner holds the workdir")
    p.add_argument("--rerun-changed", action="store_true",
                   help=f"{prefix}rerun the done runs whose parameters changed, and what depends on them")


def _cmd_study(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from superb_redundancy.study.config import StudyConfig
    from superb_redundancy.study.runner import run_study, study_status
    from superb_redundancy.study.runner import StudyChanged
    from superb_redundancy.study.shipped import study_path

    # the whole plan is checked before any run: every problem of the file, then what the disk can tell
    study, in_file = StudyConfig.load(study_path(args.study), args.override)
    if study is not None and not in_file:  # a well-formed file: its plan must make every run once
        from superb_redundancy.study.plan import duplicate_runs

        in_file = duplicate_runs(study)
    on_disk: list[str] = []
    if study is not None:
        if args.workdir:
            study.workdir = args.workdir
        if args.leaderboard:
            study.leaderboard = replace(study.leaderboard, path=args.leaderboard)
        if args.device:
            study.device = args.device
        on_disk = study.problems()
    problems = list(dict.fromkeys(in_file + on_disk))
    if problems and (args.action == "run" or in_file):  # status lists the runs of a well-formed file regardless
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        raise UserError(f"{len(problems)} problem(s) in {args.study} (listed above); nothing was run")
    if args.action == "run":
        started = time.monotonic()
        try:
            states, frame = run_study(study, executor_override=args.executor, wait=getattr(args, "wait", False),
                                      rerun_changed=getattr(args, "rerun_changed", False))
        except StudyChanged as changed:
            for line in changed.lines:
                print(f"changed: {line}", file=sys.stderr)
            again = ("bash scripts/main.sh --rerun-changed" if args.command == "main"
                     else f"superb-redundancy study run {args.study} --rerun-changed")
            raise UserError(f"{changed}; to rerun them and what depends on them: {again}; nothing was run") from None
        _print_study_summary(study, states, frame, time.monotonic() - started)
        return 1 if any(s["status"] in ("failed", "skipped", "refused") for s in states.values()) else 0
    if args.action == "cancel":
        from superb_redundancy.study.runner import cancel_study

        cancelled = cancel_study(study)
        for run_id, job in cancelled:
            print(f"cancelled job {job} ({run_id})")
        print(f"study {study.name}: {len(cancelled)} job(s) cancelled")
        return 0
    if args.estimate:
        _print_estimate(study, args.calibrate)
    else:
        rows = study_status(study)
        headers = ["run", "status", "detail"]
        if (args.executor or study.executor.kind) == "slurm":
            from superb_redundancy.study.runner import study_jobs

            jobs = study_jobs(study)
            rows = [(*row, *jobs[row[0]]) for row in rows]
            headers += ["asks for", "job (Slurm state)"]
        print(tabulate(rows, headers=headers, tablefmt="github"))
    for problem in problems:  # what the disk lacks: the runs can be listed, not run
        print(f"problem: {problem}", file=sys.stderr)
    return 0


def _print_estimate(study, calibrate: bool) -> None:
    """The study's cost per run kind and in total (superb_redundancy.study.estimate)."""
    from tabulate import tabulate

    from superb_redundancy.study.estimate import ASSUMED, calibrate as measure, estimate, summarize

    throughput = measure(study.device) if calibrate else ASSUMED
    costs = estimate(study, throughput)
    rows = [[r["kind"], r["runs"], f"{r['device_hours']:,.1f}", f"{r['device_gb']:.1f}", f"{r['host_gb']:.1f}",
             f"{r['disk_gb']:,.1f}"] for r in summarize(costs)]
    where = "device" if study.device != "cpu" else "CPU"
    print(f"study {study.name}: {len(costs)} runs on {study.device}; {throughput.describe()}")
    print(tabulate(rows, headers=["runs of kind", "count", f"{where} hours", "peak device GB", "peak host GB",
                                  "disk GB"], tablefmt="github", disable_numparse=True))
    notes = {}
    for cost in costs:
        notes.setdefault(cost.kind, cost.note)
    for kind, note in notes.items():
        print(f"  {kind}: e.g. {note}")


def _print_study_summary(study, states: dict, frame, elapsed: float) -> None:
    from superb_redundancy.results.leaderboard.tables import format_tables

    counts: dict[str, int] = {}
    for state in states.values():
        counts[state["status"]] = counts.get(state["status"], 0) + 1
    print(f"\nstudy {study.name}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for run_id, state in states.items():
        if state["status"] in ("failed", "skipped", "refused"):
            print(f"  {state['status']}: {run_id}: {state.get('error') or state.get('reason')}", file=sys.stderr)
        elif (state.get("outputs") or {}).get("same_as"):
            print(f"  {run_id}: the same model as {state['outputs']['same_as']} (evaluated once)")
    work = Path(study.workdir)
    for figure in sorted(work.glob("runs/similarity/*/similarity.png")) + sorted(work.glob("runs/curves/*/*.png")):
        print(f"figure: {figure}")
    if frame is not None:
        from tabulate import tabulate

        from superb_redundancy.results.leaderboard.tables import overview

        print(format_tables(frame))
        print("\n## overview (one row per upstream variant)")
        print(tabulate(overview(frame), headers="keys", tablefmt="github", showindex=False))
        _print_paper_comparison(study, frame)
        print(f"\nleaderboard: {Path(study.leaderboard.path) / 'index.html'}")
    print(_timing_line(states) + f"; this call {elapsed:.0f} s (leaderboard included)")


def _print_paper_comparison(study, frame) -> None:
    """The paper's Table 1 beside the study's KS results, per upstream with a base (paper_comparison.md)."""
    from superb_redundancy.results.paper_comparison import write_comparison

    task = study.curves.task if study.curves else "speech_commands"
    for up in study.upstreams:
        if not up.baseline or len(study.upstreams) > 1 and up is not study.upstreams[0]:
            continue  # one comparison: the first upstream's (the paper's table is one model's)
        text = write_comparison(frame, Path(study.workdir), up.name, Path(study.leaderboard.path) / "paper_comparison.md",
                                task)
        if text:
            print("\n" + text)


def _timing_line(states: dict) -> str:
    """Where the time went: the seconds of the study's runs by kind, as recorded (a second call reports the
    runs it skipped as they were made; its own time is the runner's)."""
    spent: dict[str, float] = {}
    longest = ("", 0.0)
    for run_id, state in states.items():
        if state.get("status") == "done" and "started" in state and "finished" in state:
            kind, seconds = run_id.split("/")[0], state["finished"] - state["started"]
            spent[kind] = spent.get(kind, 0.0) + seconds
            longest = max(longest, (run_id, seconds), key=lambda item: item[1])
    total = sum(spent.values())
    parts = ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in spent.items())
    pole = f"; longest run {longest[0]} {longest[1]:.0f} s" if longest[0] else ""
    return f"time by stage (run seconds, summed over parallel workers): {parts}; total {total:.0f} s{pole}"


def _cmd_main(args: argparse.Namespace) -> int:
    """The README's main command: the embedded default study (superb_redundancy/studies/embedded_default.yaml)."""
    args.action, args.study, args.executor = "run", args.study or "embedded_default", None
    return _cmd_study(args)

