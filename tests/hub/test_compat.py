"""Each compat fix is needed on this stack (s3prl fails without it) and works with it; apply() is idempotent."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch

from superb_redundancy.hub import compat


def run_python(code: str, exclude: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that imports our package first (its hook applies the fixes), nothing else."""
    env = {k: v for k, v in os.environ.items() if k != compat.EXCLUDE_ENV}
    if exclude:
        env[compat.EXCLUDE_ENV] = ",".join(exclude)
    return subprocess.run([sys.executable, "-c", "import superb_redundancy\n" + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, env=env)


TRIGGERS = {
    "audio_backend": ("from s3prl import hub", "set_audio_backend"),
    "sox_effects": ("import s3prl.downstream.speech_commands.dataset", "torchaudio.sox_effects"),
    "hf_hub_names": ("from s3prl import run_downstream", "HfFolder"),
    "catalyst_sampler": ("import s3prl.downstream.speech_commands.expert", "catalyst"),
    "deferred_transformers_upstreams": (
        "import sys, s3prl.hub; assert 'transformers' not in sys.modules, 'transformers imported by s3prl.hub'",
        "transformers imported by s3prl.hub",
    ),
    "namespace_safe_global": (
        """
        import argparse, io, torch, s3prl
        buffer = io.BytesIO(); torch.save({"Args": argparse.Namespace(mode="train")}, buffer); buffer.seek(0)
        assert torch.load(buffer)["Args"].mode == "train"  # what -m evaluate / -a do with states-*.ckpt
        """,
        "Namespace",
    ),
}


@pytest.mark.parametrize("fix", sorted(TRIGGERS))
@pytest.mark.slow
def test_fix_is_needed_and_sufficient(fix):
    code, error = TRIGGERS[fix]
    without = run_python(code, exclude=(fix,))
    assert without.returncode != 0 and error in without.stderr, without.stderr[-2000:]
    with_fix = run_python(code)
    assert with_fix.returncode == 0, with_fix.stderr[-2000:]


@pytest.mark.slow
def test_audio_io_falls_back_to_soundfile_without_ffmpeg(tmp_path):
    if compat._torchcodec_works():
        pytest.skip("TorchCodec decodes here (FFmpeg present): the fix is a no-op on this stack")
    path = tmp_path / "x.wav"
    soundfile.write(path, (np.arange(1600) % 7 / 10).astype("float32"), 16000, subtype="PCM_16")
    code = f"import s3prl, torchaudio; wav, sr = torchaudio.load({str(path)!r}); assert wav.shape == (1, 1600) and sr == 16000"
    without = run_python(code, exclude=("audio_io",))
    assert without.returncode != 0 and "torchcodec" in without.stderr.lower(), without.stderr[-2000:]
    assert run_python(code).returncode == 0


@pytest.mark.slow
def test_voxceleb1_cache_is_keyed_by_corpus(tmp_path):
    """Two corpora, same split name: without the fix the second silently reuses the first one's file list."""
    roots = []
    for corpus, speakers in (("a", ["id10001"]), ("b", ["id10001", "id10002"])):
        root = tmp_path / corpus
        lines = []
        for speaker in speakers:
            clip = root / "dev" / "wav" / speaker / "vid" / "00001.wav"
            clip.parent.mkdir(parents=True)
            soundfile.write(clip, np.zeros(1600, dtype="float32"), 16000)
            lines.append(f"1 {speaker}/vid/00001.wav")
        (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
        roots.append(root)
    code = f"""
        import s3prl.downstream.voxceleb1.dataset as dataset
        dataset.CACHE_PATH = {str(tmp_path / 'stock_cache')!r} + "/"  # stock behaviour, outside site-packages
        import os; os.environ["SUPERB_REDUNDANCY_CACHE"] = {str(tmp_path / 'cache')!r}
        sizes = [len(dataset.SpeakerClassifiDataset("train", r, str(r / "iden_split.txt")).dataset)
                 for r in [__import__("pathlib").Path(p) for p in {[str(r) for r in roots]!r}]]
        assert sizes == [1, 2], sizes
    """
    without = run_python(code, exclude=("voxceleb1_cache",))
    assert without.returncode != 0 and "[1, 1]" in without.stderr, without.stderr[-2000:]
    with_fix = run_python(code)
    assert with_fix.returncode == 0, with_fix.stderr[-2000:]


def test_apply_is_idempotent_and_a_noop_where_names_exist():
    first = compat.apply()
    assert compat.apply() == first  # nothing new the second time
    for name in compat.FIXES:
        assert compat.FIXES[name]() is False, f"{name} changed something on a second application"


def test_a_deferred_upstream_entry_calls_s3prls_own_when_called():
    """The stand-in hf_wav2vec2_custom is s3prl's: called, it imports s3prl's expert, which goes for the model
    (offline here: transformers' OSError)."""
    entry = compat._deferred_entry("hf_wav2vec2", "hf_wav2vec2_custom")
    with pytest.raises(OSError):
        entry("/nonexistent/model")
    assert sys.modules["s3prl.upstream.hf_wav2vec2.expert"].UpstreamExpert.__module__.startswith("s3prl.")


def test_unknown_fix_name_is_refused():
    with pytest.raises(ValueError, match=r"unknown compat fix\(es\) \['nope'\]; valid: "):
        compat.apply(exclude={"nope"})


def test_namespace_is_a_safe_global_only():
    buffer = __import__("io").BytesIO()
    torch.save({"Args": argparse.Namespace(a=1), "f": torch.nn.Linear(1, 1)}, buffer)
    buffer.seek(0)
    with pytest.raises(Exception, match="Linear"):  # weights_only stays on for everything else
        torch.load(buffer)


def test_sox_effects_stand_in():
    from torchaudio.sox_effects import apply_effects_tensor

    stereo = torch.stack([torch.ones(8000), 3 * torch.ones(8000)])
    out, rate = apply_effects_tensor(stereo, 8000, [["channels", "1"], ["rate", "16000"], ["gain", "-6.0"]])
    assert rate == 16000 and out.shape == (1, 16000)
    # mean of channels (2), -6 dB gain; 2e-3 absorbs the sinc resampler's ripple on a constant signal
    torch.testing.assert_close(out[0, 100:-100], torch.full((15800,), 2 * 10 ** (-6 / 20)), rtol=0, atol=2e-3)
    padded, _ = apply_effects_tensor(torch.ones(1, 10), 10, [["pad", "0.5", "0.2"], ["trim", "0", "1.5"]])
    assert padded.shape == (1, 15) and padded[0, :5].abs().sum() == 0
    with pytest.raises(NotImplementedError, match="sox effect 'reverb' is not available"):
        apply_effects_tensor(torch.ones(1, 10), 10, [["reverb"]])


def test_distributed_sampler_wrapper_shards_the_drawn_indices():
    sampler = torch.utils.data.WeightedRandomSampler([0.1, 0.2, 0.7, 0.0], num_samples=10,
                                                     generator=torch.Generator().manual_seed(0))
    shards = [compat.DistributedSamplerWrapper(sampler, num_replicas=2, rank=r, shuffle=False) for r in (0, 1)]
    drawn = [list(s) for s in shards]
    assert len(drawn[0]) == len(drawn[1]) == 5
    assert 3 not in drawn[0] + drawn[1]  # zero-weight index never drawn: the wrapped sampler decides


@pytest.mark.slow
def test_a_fresh_process_gets_the_fixes_from_the_import_hook():
    """No apply() call: importing our package first is enough for every s3prl import that follows."""
    result = run_python("""
        import s3prl.hub, s3prl.downstream.runner, s3prl.downstream.voxceleb1.dataset as vox
        from superb_redundancy.hub import compat
        assert set(compat.FIXES) - compat.applied() <= {"audio_io"}, compat.applied()
        assert getattr(vox.SpeakerClassifiDataset.__init__, "_superb_redundancy", False)
    """)
    assert result.returncode == 0, result.stderr[-2000:]


def _payload_checkpoint(path, marker) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"Config": {}, "payload": Payload()}, path)


@pytest.mark.slow
def test_s3prl_loaders_load_weights_only(tmp_path):
    """s3prl's distiller loader asks for weights_only=False first; the payload must not run."""
    evil, marker = tmp_path / "evil.ckpt", tmp_path / "pwned"
    _payload_checkpoint(evil, marker)
    code = f"""
        from s3prl.upstream.distiller.builder import PretrainedDistiller
        from superb_redundancy.hub.compat import UnsafeCheckpointError
        try:
            PretrainedDistiller({{"ckpt_file": {str(evil)!r}, "load_pretrain": "True", "no_grad": "True",
                                 "permute_input": "False"}})
        except UnsafeCheckpointError as error:
            print(error)
    """
    refused = run_python(code)
    assert refused.returncode == 0, refused.stderr[-2000:]
    assert "refused to load" in refused.stdout and "posix.system" in refused.stdout
    assert "weights_only=False" not in refused.stdout  # the refusal never suggests turning the protection off
    assert not marker.exists()


@pytest.mark.slow
def test_a_file_named_in_the_trust_variable_loads_as_s3prl_asked(tmp_path):
    evil, marker = tmp_path / "trusted.ckpt", tmp_path / "ran"
    _payload_checkpoint(evil, marker)
    code = f"""
        import os
        os.environ[{compat.TRUST_ENV!r}] = {str(evil)!r}
        from s3prl.upstream.distiller.builder import PretrainedDistiller
        try:
            PretrainedDistiller({{"ckpt_file": {str(evil)!r}, "load_pretrain": "True", "no_grad": "True",
                                 "permute_input": "False"}})
        except Exception:
            pass  # the payload is not a distiller; what matters is that it was unpickled
    """
    assert run_python(code).returncode == 0
    assert marker.exists()


def test_loads_outside_s3prl_are_left_alone(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, path)
    compat.apply()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert getattr(torch.load, "_superb_redundancy", False)  # the guard is installed, and passes our loads through
