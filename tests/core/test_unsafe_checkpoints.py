"""No checkpoint runs code: a pickle with an os.system payload, given to every upstream and command, creates no file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers.audio import silence
from helpers.commands import cli as user_cli
from helpers.commands import in_process

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    """(checkpoint, marker): loading the checkpoint with pickle's full power would create the marker file."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    payload = Payload(marker)
    # keys of every format our loaders and s3prl's look at, each holding the payload
    torch.save({"Config": payload, "Args": payload, "model_cfg": payload, "model_weight": payload, "cfg": payload,
                "model": payload, "task_cfg": payload, "Upstream": payload, "superb_redundancy": payload}, path)
    return path, marker


def _fresh(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERB_REDUNDANCY_TRUST")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.mark.slow
def test_every_upstream_that_takes_a_path_refuses_the_payload(evil, tmp_path):
    """Every name s3prl's hub (ours included) resolves a -k path with, built in one fresh process."""
    path, marker = evil
    result = _fresh(f"""
        import json
        import superb_redundancy.hub.upstreams as registry
        from superb_redundancy.hub.install import install
        install()
        import s3prl.hub as hub
        names = sorted(set(hub.options(only_registered_ckpt=False)) | set(registry.UPSTREAMS))
        takes_a_path = [n for n in names if n.endswith(("_local", "_custom")) or n in registry.UPSTREAMS]
        outcome = {{}}
        for name in takes_a_path:
            try:
                getattr(hub, name)(ckpt={str(path)!r})
                outcome[name] = "loaded"
            except BaseException as error:
                outcome[name] = f"{{type(error).__name__}}: {{str(error).splitlines()[0] if str(error) else ''}}"
        print(json.dumps(outcome))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert len(outcome) > 40  # s3prl's _local/_custom names and ours
    assert not marker.exists(), "a payload ran"
    assert "loaded" not in outcome.values()
    refused = {name for name, text in outcome.items() if "posix.system" in text}
    # the loaders that reach torch.load name the rejected global; distiller and mockingjay asked for full pickles
    assert {"distiller_local", "mockingjay_local", "wav2vec2_local", "hubert_local", "wavlm_local",
            "pruned_wav2vec2_local", "mimic_local"} <= refused, outcome
    assert not any("weights_only=False" in text for text in outcome.values())


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    for i in range(12):
        silence(root / f"{i}.wav", 16000)
    return root


@pytest.mark.parametrize("command", [
    "superb-redundancy similarity -u distiller_local -k {evil} --data {audio} --output-dir {tmp}/sim",
    "superb-redundancy similarity -u mockingjay_local -k {evil} --data {audio} --output-dir {tmp}/sim",
    "superb-redundancy profile -u wav2vec2_local -k {evil} --no-latency",
    "superb-redundancy prune --family wav2vec2 --base {evil} --objective bi --amount 1 --data {audio} --output {tmp}/s.yaml",
    "superb-redundancy mimic train --teacher {evil} --tiny-grid --data {audio} --output-dir {tmp}/m",
    "superb-redundancy curves --expdir {evil} --output-dir {tmp}/curves",
    "python run_downstream.py -m evaluate -e {evil}",
])
def test_commands_refuse_the_payload(command, evil, audio, tmp_path):
    path, marker = evil
    words = command.format(evil=path, audio=audio, tmp=tmp_path).split()
    if words[0] == "python":  # our run_downstream.py, as a user runs it
        result = subprocess.run([sys.executable, str(ROOT / "run_downstream.py"), *words[2:]], capture_output=True,
                                text=True, cwd=tmp_path, timeout=600)
    elif "distiller_local" in words:  # one as a user runs it: a fresh process
        result = user_cli(*words[1:], cwd=tmp_path)
    else:
        result = in_process(*words[1:], cwd=tmp_path)
    assert not marker.exists(), "a payload ran"
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "posix.system" in last and "weights_only=False" not in last, result.stderr[-2000:]
