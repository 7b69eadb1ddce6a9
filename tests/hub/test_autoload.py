"""Autoload: a process that never names our package gets the compat fixes and our variants when it imports s3prl."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import _superb_redundancy_autoload as autoload
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import save_pruned

ROOT = Path(__file__).resolve().parents[2]
PTH = "superb_redundancy_autoload.pth"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (site-packages' .pth files run as usual), from a neutral directory."""
    environment = {k: v for k, v in os.environ.items() if k != autoload.ENV}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=environment, cwd=tempfile.gettempdir())


def test_the_pth_is_installed():
    found = [Path(d) / PTH for d in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}]
    found = [p for p in found if p.exists()]
    assert found, f"{PTH} not in site-packages: run `bash scripts/bootstrap.sh`"
    assert found[0].read_text().startswith("import _superb_redundancy_autoload;")


def test_startup_imports_nothing_heavy():
    result = run_python("""
        import sys
        heavy = sorted(m for m in ("torch", "s3prl", "superb_redundancy", "numpy") if m in sys.modules)
        assert not heavy, heavy
        import _superb_redundancy_autoload as autoload
        assert autoload.installed()
    """)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_importing_s3prl_hub_alone_brings_fixes_and_variants():
    code = """
        import s3prl.hub as hub
        assert callable(hub.pruned_wav2vec2) and callable(hub.pruned_wavlm_local)
        assert "pruned_hubert_local" in hub.options(only_registered_ckpt=False)
        import huggingface_hub, torch, torchaudio
        assert callable(torchaudio.set_audio_backend) and hasattr(huggingface_hub, "HfFolder")
        assert torch.load._superb_redundancy  # safe_checkpoint_loading
        import s3prl.downstream.speech_commands_35.expert  # our downstreams are installed too
    """
    assert "import superb" not in code and "from superb" not in code
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("first", ["import superb_redundancy", "import s3prl",
                                   "from superb_redundancy.hub.install import install; install()"])
@pytest.mark.slow
def test_any_import_order_works(first):
    result = run_python(f"""
        {first}
        import s3prl.hub as hub
        from superb_redundancy.hub.install import install
        assert install() and callable(hub.pruned_hubert)
    """)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("value", ["0", "off"])
@pytest.mark.slow
def test_the_environment_variable_turns_it_off(value):
    result = run_python("""
        import sys, _superb_redundancy_autoload as autoload
        assert not autoload.installed() and not autoload.install()
        import superb_redundancy  # the compat hook only, as without autoload
        import s3prl.hub as hub
        assert not hasattr(hub, "pruned_wav2vec2")
    """, **{autoload.ENV: value})
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_s3prl_upstream_as_espnet_builds_it(tiny_ckpts, tmp_path):
    """The calls ESPnet's S3prlFrontend makes: the name is in available_names(), S3PRLUpstream(name, path_or_url,
    normalize, extra_conf), a Featurizer over it, then upstream + featurizer on a batch."""
    artifact = save_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]),
                           tmp_path / "a.pt")
    result = run_python(f"""
        import s3prl, torch
        from s3prl.nn import Featurizer, S3PRLUpstream
        name = "pruned_wav2vec2_local"
        assert name in S3PRLUpstream.available_names()
        upstream = S3PRLUpstream(name, path_or_url={str(artifact)!r}, normalize=False, extra_conf=None).eval()
        featurizer = Featurizer(upstream)
        with torch.no_grad():
            states, lengths = upstream(torch.randn(2, 16000), torch.LongTensor([16000, 12000]))
            features, feature_lengths = featurizer(states, lengths)
        assert len(states) == 4 and features.shape[0] == 2 and features.shape[-1] == 64, features.shape
    """)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_a_registration_error_does_not_break_s3prl(tmp_path):
    """A broken variant of ours is reported on stderr; s3prl.hub still imports for everyone else."""
    result = run_python("""
        from superb_redundancy.hub import install
        def broken():
            raise RuntimeError("boom")
        install.install = broken
        import s3prl.hub as hub
        assert callable(hub.wav2vec2) and not hasattr(hub, "pruned_wav2vec2")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "autoload could not register" in result.stderr and "boom" in result.stderr


@pytest.mark.slow
def test_the_wheel_carries_the_pth_at_its_root(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("superb_redundancy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert PTH in names and "_superb_redundancy_autoload.py" in names
        assert archive.read(PTH).decode().strip() == \
            "import _superb_redundancy_autoload; _superb_redundancy_autoload.install()"
        record = archive.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        assert PTH in record  # so pip uninstall removes it
