"""GPU memory on a local machine (study/devices.py, study/executors.py): one GPU per local worker, more workers than
GPUs refused in one line before any run; CUDA's cache given back after each step that ran in the runner's process.
All fail on the main before issue 25 (several workers shared one GPU unaccounted)."""

from __future__ import annotations

import queue

import pytest
import torch

from superb_redundancy.study.devices import check_workers, worker_gpus


@pytest.fixture
def gpus(monkeypatch):
    """This machine as one with ``n`` GPUs (the check reads only their count)."""
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return set_count


def test_more_local_workers_than_gpus_is_refused(gpus):
    gpus(2)
    check_workers(2, "cuda")
    check_workers(8, "cpu")  # a CPU study shares cores, not GPUs
    with pytest.raises(ValueError, match=r"^executor.workers: 3 workers on cuda, but this machine has 2 GPU\(s\); "
                                         r"each local worker takes one GPU \(workers <= 2\), or run on Slurm$"):
        check_workers(3, "cuda")
    with pytest.raises(ValueError, match=r"^executor.workers: 2 workers on the one GPU cuda:1; give device: cuda"):
        check_workers(2, "cuda:1")


def test_a_study_with_too_many_workers_is_refused_before_any_run(gpus, tmp_path):
    import yaml

    from superb_redundancy.study.config import StudyConfig

    gpus(1)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "workdir": str(tmp_path / "w"), "device": "cuda",
                                    "upstreams": [{"name": "w"}], "tasks": ["speech_commands"],
                                    "executor": {"kind": "local", "workers": 2}}))
    study = StudyConfig.from_yaml(path)
    assert any(p.startswith("executor.workers: 2 workers on cuda, but this machine has 1 GPU(s)")
               for p in study.problems())


def test_each_local_worker_sees_a_gpu_of_its_own(monkeypatch):
    from superb_redundancy.study import executors, guard

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_gpus(3) == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6,7")  # the user's choice is kept to
    assert worker_gpus(2) == ["4", "6"]
    handed = queue.Queue()
    for gpu in worker_gpus(2):
        handed.put(gpu)
    monkeypatch.setattr(guard, "die_with_parent", lambda parent: None)
    threads = torch.get_num_threads()
    try:
        seen = []
        for _ in range(2):  # what each worker's initializer leaves it with
            executors._worker_init(0, 1, handed)
            seen.append(executors.os.environ["CUDA_VISIBLE_DEVICES"])
    finally:
        torch.set_num_threads(threads)
    assert seen == ["4", "6"]


def test_a_step_gives_the_device_memory_back(monkeypatch):
    from superb_redundancy.study import steps

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    steps._free_device_memory()
    assert emptied == [True]
