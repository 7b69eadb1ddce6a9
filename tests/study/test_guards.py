"""The study runner's guards (issue 11), through the CLI as users run it: one runner per workdir, no child
outliving a killed runner, no folder wiped under a live writer, changed parameters never silently reused, and
every problem of a bad study file reported before any run.

The lock and rerun tests replace the steps with quick stand-ins (fake_steps.py); the kill tests run s3prl's
runner for real, since its child process is what must not survive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import studies
from helpers.commands import CLI
from helpers.commands import cli as user_cli
from helpers.commands import in_process
from helpers.studies import corpus_data
from superb_redundancy.study import guard
from superb_redundancy.study.shipped import study_path

HERE = Path(__file__).resolve().parent


def env(fake: bool = True, **extra: str) -> dict:
    values = {**os.environ, "HF_HUB_OFFLINE": "1", "SUPERB_REDUNDANCY_OFFLINE": "1", **extra}
    if fake:
        values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        values["SUPERB_REDUNDANCY_STUDY_STEPS"] = "fake_steps"
    return values


def cli(*args: str, fake: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """``superb-redundancy ARGS`` as a user runs it (a fresh process), the steps faked unless ``fake=False``."""
    return user_cli(*args, env=env(fake, **extra))


@pytest.fixture
def fake_cli(monkeypatch):
    """``superb-redundancy ARGS`` through the CLI's main in this process, with the quick stand-in steps."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("SUPERB_REDUNDANCY_STUDY_STEPS", "fake_steps")
    return in_process


def write_study(path: Path, **overrides) -> Path:
    return studies.write_study(path, **{"name": "g", "seeds": [1], **overrides})


def executed(work: Path) -> list[str]:
    path = work / "executed.txt"
    return path.read_text().split() if path.is_file() else []


def problem_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line[len("problem: "):] for line in result.stderr.splitlines() if line.startswith("problem: ")]


# ------------------------------------------------------------------------------------------ validation
BAD = {
    "upstreams": [
        {"name": "w", "base": "tiny", "similarity": {"limit": -5}, "prune": {"objective": ["bi"]}},
        {"name": "v", "base": "tiny", "prune": {"objectives": ["bi"], "amounts": [-1, 3, 1, 1]}},
        {"family": "hubert"},
    ],
    "setting": "huge", "device": "tpu", "seeds": [1, 1], "executor": {"workers": "two"},
}
EXPECTED = [  # every problem of BAD, one line each
    "bad.yaml: missing field(s) ['name']",  # the study's
    "upstreams[w].similarity.limit: -5; must be >= 1",
    "upstreams[w].prune: unknown field(s) ['objective']; valid: ['amounts', 'iterative', 'objectives']",
    "upstreams[v].prune.amounts: -1; a layer count (int >= 0), a fraction in [0, 1), or one of ['keep95', 'keep50']",
    "upstreams[v].prune.amounts: 1 is listed twice",
    "upstreams[2]: missing field(s) ['name']",
    "seeds: 1 is listed twice",
    "executor.workers: 'two' is not an int",
    "device: 'tpu'; valid: cpu, cuda, cuda:N, mps",
    "setting: 'huge' has no config for speech_commands; valid settings: ['demo', 'superb', 'tiny']",
    "upstreams[v].prune.amounts: 3 layers, but the 3-layer base can drop at most 2",  # tiny: 3 layers
]


@pytest.mark.parametrize("action", ["run", "status"])
def test_a_bad_study_file_reports_all_its_problems_before_any_run(tmp_path, action, fake_cli):
    study = write_study(tmp_path / "bad.yaml", **BAD)
    text = yaml.safe_load(study.read_text())
    del text["name"]
    study.write_text(yaml.safe_dump(text))
    result = (cli if action == "run" else fake_cli)("study", action, str(study))  # `run` as a user runs it
    assert result.returncode == 2, result.stderr
    found = problem_lines(result)
    for expected in EXPECTED:
        assert sum(expected in line for line in found) == 1, (expected, found)
    assert len(found) == len(EXPECTED), found  # nothing else, nothing twice
    assert result.stderr.strip().splitlines()[-1].endswith("nothing was run")
    assert "Traceback" not in result.stderr and not (tmp_path / "work").exists()  # refused before any work


@pytest.mark.parametrize("change, problem", [
    ({"upstreams": [{"name": "w", "prune": {"objective": ["bi"]}}]},  # the typo that used to drop every prune run
     "upstreams[w].prune: unknown field(s) ['objective']"),
    ({"upstreams": [{"base": "tiny"}]}, "upstreams[0]: missing field(s) ['name']"),
    ({"executor": {"workers": "two"}}, "executor.workers: 'two' is not an int"),
    ({"upstreams": [{"name": "w", "mimic": [{"z": 32}, {"z": 32, "lr": 0.1}]}]},
     "upstreams[w].mimic[1]: the same mimicker (linear-N1-z32) as upstreams[w].mimic[0]"),
    ({"tasks": ["speech_commands", "speech_commands"]}, "tasks: 'speech_commands' is listed twice"),
    ({"upstreams": [{"name": "w", "base": "missing/base.pt"}]}, "upstreams[w].base: checkpoint missing/base.pt"),
])
def test_each_bad_field_is_one_line(tmp_path, change, problem, fake_cli):
    result = fake_cli("study", "run", str(write_study(tmp_path / "s.yaml", **change)))
    assert result.returncode == 2 and problem_lines(result) == [p for p in problem_lines(result) if problem in p]
    assert len(problem_lines(result)) == 1, result.stderr


# ------------------------------------------------------------------------------------------ changed parameters
def test_a_runs_hash_follows_what_it_reads_not_where_it_runs(tmp_path):
    from superb_redundancy.study.config import StudyConfig
    from superb_redundancy.study.plan import expand

    def hashes(**change) -> dict[str, str]:
        upstreams = [{"name": "a", "similarity": {"limit": 64}, "prune": {"objectives": ["bi"], "amounts": [1]}}]
        study = StudyConfig.from_yaml(write_study(tmp_path / "s.yaml", **{"upstreams": upstreams, **change}))
        return {run.run_id: run.params_hash for run in expand(study)}

    before = hashes()
    assert len(set(before.values())) == len(before)
    assert hashes(device="cuda", workdir=str(tmp_path / "elsewhere"), executor={"kind": "slurm"}) == before
    more = hashes(tasks=["speech_commands", "emotion"])  # a new task adds runs and a corpus, changes nothing else
    assert {rid for rid, digest in before.items() if more[rid] != digest} == {"data"}
    for shipped in ("embedded_default", "paper"):
        assert StudyConfig.load(study_path(shipped))[1] == []


def test_a_retrained_base_or_a_new_corpus_version_changes_the_hashes(tmp_path, monkeypatch):
    """A base named by path (or a shipped stem) is hashed by content: retraining the file in place is a change;
    so is a new version of the synthetic corpus generator. Hub names are decided by their name."""
    import importlib

    import torch

    from superb_redundancy.study.config import StudyConfig
    from superb_redundancy.study.plan import expand
    from superb_redundancy.study.plan import base_content

    checkpoint = tmp_path / "base.pt"
    torch.save({"weights": torch.zeros(3)}, checkpoint)
    upstreams = [{"name": "a", "base": str(checkpoint), "similarity": {"limit": 64},
                  "prune": {"objectives": ["bi"], "amounts": [1]}}]

    def hashes() -> dict[str, str]:
        study = StudyConfig.from_yaml(write_study(tmp_path / "s.yaml", upstreams=upstreams))
        return {run.run_id: run.params_hash for run in expand(study)}

    before = hashes()
    torch.save({"weights": torch.ones(3)}, checkpoint)
    retrained = hashes()
    assert {rid for rid in before if retrained[rid] != before[rid]} == set(before) - {"data"}
    generator = importlib.import_module("superb_redundancy.data.corpus.generate")  # the module, not its function
    monkeypatch.setattr(generator, "CORPUS_VERSION", generator.CORPUS_VERSION + 1)
    assert all(hashes()[rid] != retrained[rid] for rid in before)  # the data run too
    assert base_content("wav2vec2_base_960") is None and base_content("ks_w2v2_8l") is not None


def test_an_edited_downstream_config_changes_the_hashes_of_the_runs_it_trains(tmp_path, monkeypatch):
    """A setting is hashed by its config's content: more steps in speech_commands/tiny.yaml reruns the runs that
    train with it (and what reads them), not the similarity or the prune runs; a comment changes nothing."""
    import shutil

    from superb_redundancy.data import tasks
    from superb_redundancy.study.config import StudyConfig
    from superb_redundancy.study.plan import expand

    configs = tmp_path / "downstream_configs"
    shutil.copytree(tasks.configs_dir(), configs)
    monkeypatch.setattr(tasks, "configs_dir", lambda: configs)
    upstreams = [{"name": "a", "similarity": {"limit": 64}, "prune": {"objectives": ["bi"], "amounts": [1]}}]

    def hashes() -> dict[str, str]:
        study = StudyConfig.from_yaml(write_study(tmp_path / "s.yaml", upstreams=upstreams))
        return {run.run_id: run.params_hash for run in expand(study)}

    before = hashes()
    config = configs / "speech_commands" / "tiny.yaml"
    config.write_text("# a comment\n" + config.read_text())
    assert hashes() == before
    config.write_text(config.read_text().replace("total_steps: 30", "total_steps: 60"))
    changed = {rid for rid, digest in hashes().items() if digest != before[rid]}
    assert changed and all(rid.startswith("downstream/") for rid in changed)
    assert set(changed) == {rid for rid in before if rid.startswith("downstream/")}


def test_a_changed_parameter_reruns_exactly_the_affected_runs(tmp_path, fake_cli):
    upstreams = [{"name": n, "similarity": {"limit": 64}, "prune": {"objectives": ["bi"], "amounts": [1]}}
                 for n in ("a", "b")]
    path = write_study(tmp_path / "s.yaml", upstreams=upstreams)
    work = tmp_path / "work"
    assert fake_cli("study", "run", str(path)).returncode == 0
    everything = executed(work)
    assert len(everything) == len(set(everything)) == 9  # data, 2 x (similarity, prune, base + pruned downstream)
    assert fake_cli("study", "run", str(path)).returncode == 0 and executed(work) == everything  # nothing to do

    def rerun(change, expected: set[str], status: bool = False) -> tuple[str, dict]:
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data))
        record = (work / "studies" / "g.json").read_bytes()
        refused = fake_cli("study", "run", str(path))
        assert refused.returncode == 2, refused.stderr
        lines = [line for line in refused.stderr.splitlines() if line.startswith("changed: ")]
        assert {line.split(": ")[1] for line in lines} == expected  # named, one line each
        assert refused.stderr.strip().splitlines()[-1].endswith("nothing was run")
        assert executed(work) == everything and (work / "studies" / "g.json").read_bytes() == record  # untouched
        if status:  # `study status` shows the same runs as changed
            shown = fake_cli("study", "status", str(path)).stdout.splitlines()
            assert {line.split("|")[1].strip() for line in shown if "| changed" in line} == expected
        accepted = fake_cli("study", "run", str(path), "--rerun-changed")
        assert accepted.returncode == 0, accepted.stderr
        assert sorted(executed(work)[len(everything):]) == sorted(expected)  # exactly those, once
        everything[:] = executed(work)
        on_disk = json.loads((work / "studies" / "g.json").read_text())
        assert all(run["status"] == "done" and run["current"] for run in on_disk["runs"].values())
        return refused.stderr, on_disk

    stderr, on_disk = rerun(lambda d: d["upstreams"][0]["similarity"].update(limit=32),
                            {"similarity/a", "prune/a/bi-1", "downstream/a-bi-1/speech_commands/seed1"}, status=True)
    assert "changed: similarity/a: limit 64 -> 32" in stderr
    assert "changed: prune/a/bi-1: needs changed similarity/a" in stderr
    assert on_disk["study"]["upstreams"][0]["similarity"]["limit"] == 32  # the record is of what ran
    stderr, _ = rerun(lambda d: d["upstreams"][1]["prune"].update(iterative=True),
                      {"prune/b/bi-1", "downstream/b-bi-1/speech_commands/seed1"})
    assert "changed: prune/b/bi-1: iterative false -> true" in stderr
    stderr, on_disk = rerun(lambda d: d.update(setting="superb"),
                            {f"downstream/{v}/speech_commands/seed1" for v in ("a-base", "a-bi-1", "b-base", "b-bi-1")})
    assert 'setting "tiny" -> "superb"' in stderr and on_disk["study"]["setting"] == "superb"


# ------------------------------------------------------------------------------------------ locks
def _lock_holder(work: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads((work / ".lock").read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError("the runner never took the workdir lock")


@pytest.mark.slow
def test_a_second_runner_is_refused_or_waits(tmp_path):
    path = write_study(tmp_path / "s.yaml")  # data and one downstream run, 4 s each
    work = tmp_path / "work"
    first = subprocess.Popen([*CLI, "study", "run", str(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env(FAKE_STEPS_SLEEP="4"))
    try:
        assert _lock_holder(work)["pid"] == first.pid
        waiting = subprocess.Popen([*CLI, "study", "run", str(path), "--wait"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env())
        second = cli("study", "run", str(path))
        assert first.poll() is None, "the first runner ended before the second tried"
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"superb-redundancy study: error: {work} is in use by pid {first.pid} on {os.uname().nodename} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(_lock_holder(work)['since']))} (study run g)"]
        out, err = waiting.communicate(timeout=300)
        assert first.wait(timeout=60) == 0 and waiting.returncode == 0, err
        assert f"waiting for {work}, in use by pid {first.pid}" in err and "study g: 2 done" in out
    finally:
        first.kill()
    assert executed(work) == ["data", "downstream/w-base/speech_commands/seed1"]  # each once


@pytest.mark.slow
def test_two_runners_of_a_real_study_write_each_line_once(tmp_path, corpus_root):
    """The issue's symptom: two runners each trained and evaluated in the same experiment folder (four
    args_*.yaml, every dev/test line twice in log.log). Now the second is refused while the first runs."""
    path, work = real_study(tmp_path, corpus_root), tmp_path / "work"
    first = subprocess.Popen([*CLI, "study", "run", str(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env(fake=False))
    try:
        assert _lock_holder(work)["pid"] == first.pid
        second = cli("study", "run", str(path), fake=False)
        assert first.poll() is None and second.returncode == 2
        assert f"is in use by pid {first.pid}" in second.stderr
        assert first.wait(timeout=600) == 0
    finally:
        first.kill()
    expdir = work / "runs/downstream/w-base/speech_commands/seed1/exp"
    lines = (expdir / "log.log").read_text().splitlines()
    assert len(lines) == len(set(lines)) and sum(line.startswith("test ") for line in lines) == 1
    assert len(list(expdir.glob("args_*.yaml"))) == 2  # one train, one evaluate


@pytest.mark.parametrize("executor", ["local", pytest.param("submitit", marks=pytest.mark.slow)])
def test_a_run_folder_held_by_a_live_process_is_left_alone(tmp_path, executor):
    """A run whose folder another live process holds (a Slurm job of an earlier call, an orphaned child) is
    not started: its files and state stay; what needs it is skipped; the next call runs it."""
    kind = {"local": {"kind": "local"}, "submitit": {"kind": "slurm", "cluster": "local"}}[executor]
    path = write_study(tmp_path / "s.yaml", executor=kind, upstreams=[
        {"name": "a", "baseline": False, "prune": {"objectives": ["bi"], "amounts": [1]}}])
    work = tmp_path / "work"
    folder = work / "runs" / "similarity" / "a"
    state = work / "state" / "similarity" / "a.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"status": "running", "run": {}, "started": 0}))
    with guard.hold(folder / ".lock", "a job of an earlier call"):
        (folder / "partial.bin").write_text("still being written")
        result = cli("study", "run", str(path))
        assert result.returncode == 1, result.stderr
        assert f"failed: similarity/a: not started: {folder} is in use by pid {os.getpid()}" in result.stderr
        assert "skipped: prune/a/bi-1: needs similarity/a, which failed" in result.stderr
        assert (folder / "partial.bin").is_file() and json.loads(state.read_text())["status"] == "running"
        assert executed(work) == ["data"]
    result = cli("study", "run", str(path))
    assert result.returncode == 0, result.stderr
    assert executed(work) == ["data", "similarity/a", "prune/a/bi-1", "downstream/a-bi-1/speech_commands/seed1"]
    assert not (folder / "partial.bin").exists()  # wiped once nothing held it


# ------------------------------------------------------------------------------------------ SIGKILL
def session(sid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes of a session, from the process table: (pid, command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _, _, session_id = stat[stat.rindex(")") + 2:].split()[:4]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if int(session_id) == sid and state != "Z":
            found.append((int(entry.name), command))
    return found


def real_study(tmp_path: Path, corpus_root: Path, **overrides) -> Path:
    return write_study(tmp_path / "s.yaml", data=corpus_data(corpus_root, ["speech_commands"]), **overrides)


#: the command lines of the child that runs s3prl
CHILDREN = ("superb_redundancy.results.experiment", "superb_redundancy.hub.runner")


def _start_and_kill_in_training(path: Path, work: Path) -> list[tuple[int, str]]:
    """Start `study run`, SIGKILL the runner (only it) while s3prl's child trains; the session afterwards."""
    runner = subprocess.Popen([*CLI, "study", "run", str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, env=env(fake=False))
    state = work / "state" / "downstream" / "w-base" / "speech_commands" / "seed1.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            # s3prl's child: an experiment's one process (results.experiment), or a lone runner call
            if state.is_file() and any(m in c for _, c in session(runner.pid) for m in CHILDREN):
                break
            assert runner.poll() is None, "the runner ended early"
            time.sleep(0.1)
        else:
            raise AssertionError("s3prl's child never started")
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        time.sleep(1)  # the parent-death signal is immediate; a second is plenty
        return session(runner.pid)
    finally:
        for pid, _ in session(runner.pid):  # never leave anything behind, whatever happened
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigkill_of_the_runner_leaves_no_live_child_and_the_restart_is_clean(tmp_path, corpus_root):
    path, work = real_study(tmp_path, corpus_root), tmp_path / "work"
    assert _start_and_kill_in_training(path, work) == []
    assert json.loads((work / "state/downstream/w-base/speech_commands/seed1.json").read_text())["status"] == "running"
    result = cli("study", "run", str(path), fake=False)
    assert result.returncode == 0, result.stderr
    expdir = work / "runs/downstream/w-base/speech_commands/seed1/exp"
    lines = (expdir / "log.log").read_text().splitlines()
    assert len(lines) == len(set(lines)) and sum(line.startswith("test ") for line in lines) == 1
    assert len(list(expdir.glob("args_*.yaml"))) == 2  # one train, one evaluate: nothing from the killed attempt


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigkill_of_the_runner_leaves_no_worker_nor_child(tmp_path, corpus_root):
    """With a process pool (executor.workers 2) the worker dies with the runner, and s3prl's child with it."""
    # two runs in the stage: a run alone in its stage runs in the runner's process, not in the pool
    path = real_study(tmp_path, corpus_root, executor={"kind": "local", "workers": 2}, seeds=[1, 2])
    assert _start_and_kill_in_training(path, tmp_path / "work") == []
