"""KS-35 (-d speech_commands_35): the paper's task as a downstream s3prl's own runner finds by name."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from helpers.session import scaled
from superb_redundancy.data import tasks
from superb_redundancy.downstreams.speech_commands_35.dataset import CLASSES, SpeechCommands35Dataset, load_splits
from superb_redundancy.hub import downstreams as downstream_registry
from superb_redundancy.results.metrics import read_test_metric

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
NAME = "speech_commands_35"


@pytest.fixture(scope="module")
def v2_root(corpus_root):
    return Path(corpus_root) / "speech_commands_v0.02"


def _listed(root: Path, name: str) -> set[str]:
    return {line.strip() for line in (root / name).read_text().splitlines() if line.strip()}


# ------------------------------------------------------------------------------------------------- dataset
def test_official_split_of_the_synthetic_v2_corpus(v2_root):
    splits = load_splits(v2_root)
    dev, test = _listed(v2_root, "validation_list.txt"), _listed(v2_root, "testing_list.txt")
    clips = {f"{p.parent.name}/{p.name}" for p in v2_root.glob("*/*.wav") if p.parent.name != "_background_noise_"}
    relative = {split: {f"{w}/{p.name}" for w, p in items} for split, items in splits.items()}
    assert relative["dev"] == dev and relative["test"] == test and relative["train"] == clips - dev - test
    speakers = [scaled(n) for n in (3, 1, 1)]  # the v0.02 layout: 3/1/1 speakers at scale 1, each word once
    assert (len(splits["train"]), len(splits["dev"]), len(splits["test"])) == tuple(35 * n for n in speakers)
    assert len(CLASSES) == len(set(CLASSES)) == 35
    for items in splits.values():  # every split holds all 35 words, and nothing else (no silence, no unknown)
        assert {word for word, _ in items} == set(CLASSES)
        assert all(p.parent.name == word for word, p in items)


def test_items_are_one_second_with_their_label(v2_root):
    dataset = SpeechCommands35Dataset(load_splits(v2_root)["dev"])
    assert dataset.class_num == 35 and len(dataset) == 35 * scaled(1)
    wav, label, utterance = dataset[3]
    word, path = dataset.items[3]
    assert wav.dtype == np.float32 and wav.shape == (16000,)
    assert CLASSES[label] == word and utterance == f"{word}-{path.name}"
    wavs, labels, names = dataset.collate_fn([dataset[0], dataset[1]])
    assert len(wavs) == len(labels) == len(names) == 2
    assert set(dataset.sample_weights) == {35.0}  # as many clips of each word: all weights equal


def test_clips_are_padded_or_cut_to_one_second(tmp_path):
    rng = np.random.default_rng(0)
    short, long = rng.uniform(-0.5, 0.5, 8000).astype(np.float32), rng.uniform(-0.5, 0.5, 24000).astype(np.float32)
    soundfile.write(tmp_path / "short.wav", short, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "long.wav", long, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "stereo8k.wav", np.stack([long[:8000], long[:8000]], 1), 8000, subtype="FLOAT")
    dataset = SpeechCommands35Dataset([("yes", tmp_path / n) for n in ("short.wav", "long.wav", "stereo8k.wav")])
    padded, cut, resampled = (dataset[i][0] for i in range(3))
    assert padded.shape == cut.shape == resampled.shape == (16000,)
    assert np.allclose(padded[:8000], short) and not padded[8000:].any()
    assert np.allclose(cut, long[:16000])
    half = SpeechCommands35Dataset([("yes", tmp_path / "long.wav")], gain_db=-6.0)[0][0]
    assert np.allclose(half, cut * 10 ** (-6 / 20), atol=1e-6)


def test_the_separate_test_archive_gives_the_papers_test_set(v2_root, tmp_path):
    """speech_commands_test_set_v0.02: 10 word folders, _unknown_/<word>_<spk>_nohash_<n>.wav, _silence_ dropped."""
    archive = tmp_path / "speech_commands_test_set_v0.02"
    for folder in ("yes", "_unknown_", "_silence_"):
        (archive / folder).mkdir(parents=True)
    shutil.copy(v2_root / "yes" / sorted(os.listdir(v2_root / "yes"))[0], archive / "yes" / "aaaaaaaa_nohash_0.wav")
    shutil.copy(next((v2_root / "visual").glob("*.wav")), archive / "_unknown_" / "visual_bbbbbbbb_nohash_0.wav")
    shutil.copy(next((v2_root / "_background_noise_").glob("*.wav")), archive / "_silence_" / "noise.wav")
    splits = load_splits(v2_root, test_root=archive)
    assert [(w, p.name) for w, p in splits["test"]] == [("visual", "visual_bbbbbbbb_nohash_0.wav"),
                                                        ("yes", "aaaaaaaa_nohash_0.wav")]
    # the official lists still give train/dev
    assert len(splits["dev"]) == 35 * scaled(1) and len(splits["train"]) == 35 * scaled(3)

    shutil.copy(archive / "yes" / "aaaaaaaa_nohash_0.wav", archive / "_unknown_" / "moo_cccccccc_nohash_0.wav")
    with pytest.raises(ValueError, match="'moo' is none of the 35"):
        load_splits(v2_root, test_root=archive)


def test_a_v1_root_is_refused(corpus_root):
    with pytest.raises(FileNotFoundError, match="not a Speech Commands v0.02 root"):
        load_splits(Path(corpus_root) / "speech_commands_v0.01")


# ---------------------------------------------------------------------------------------- registry, config
def test_install_makes_the_runner_import_path_resolve(hub):
    """hub: hub.install.install() ran, which installs the downstreams too."""
    from superb_redundancy.downstreams.speech_commands_35.expert import DownstreamExpert

    assert downstream_registry.DOWNSTREAMS[NAME].expert is DownstreamExpert
    # what s3prl's Runner._get_downstream does
    expert = importlib.import_module(f"s3prl.downstream.{NAME}.expert")
    assert expert.DownstreamExpert is DownstreamExpert
    import s3prl

    assert not (Path(s3prl.__file__).parent / "downstream" / NAME).exists()  # nothing written into s3prl
    assert NAME not in downstream_registry.s3prl_downstreams() and "speech_commands" in \
        downstream_registry.s3prl_downstreams()


def test_a_downstream_name_cannot_be_taken_twice(hub):
    class Impostor(torch.nn.Module):
        def get_dataloader(self, mode): ...

        def log_records(self, mode, records, logger, global_step, **kwargs): ...

        def forward(self, *args, **kwargs): ...

    before = dict(downstream_registry.DOWNSTREAMS)
    try:
        with pytest.raises(ValueError, match="downstream name 'speech_commands_35' is already registered by "
                                             "superb_redundancy.downstreams.speech_commands_35.expert"):
            downstream_registry.register_downstream(NAME)(Impostor)
        with pytest.raises(ValueError, match="s3prl's own downstream"):
            downstream_registry.register_downstream("speech_commands")
        with pytest.raises(ValueError, match="identifier"):
            downstream_registry.register_downstream("speech.commands")
        with pytest.raises(TypeError, match="lacks s3prl's expert interface"):
            downstream_registry.register_downstream("test_only_downstream")(torch.nn.Linear)
        # re-registering the same class (a module imported twice) is no conflict
        same = downstream_registry.DOWNSTREAMS[NAME].expert
        assert downstream_registry.register_downstream(NAME)(same) is same
    finally:
        downstream_registry.DOWNSTREAMS.clear()
        downstream_registry.DOWNSTREAMS.update(before)


@pytest.mark.slow
def test_third_party_downstreams_come_through_the_entry_point_group(tmp_path):
    (tmp_path / "acme_task.py").write_text(textwrap.dedent('''
        import torch
        from superb_redundancy.hub.downstreams import register_downstream

        class Base(torch.nn.Module):
            def get_dataloader(self, mode): return "loader"
            def log_records(self, mode, records, logger, global_step, **kwargs): return []
            def forward(self, *args, **kwargs): return None

        @register_downstream("acme_decorated")
        class Decorated(Base):
            """Acme's decorated task"""

        class ByEntryPoint(Base):
            """Acme's entry-point task"""
    '''))
    info = tmp_path / "acme_task-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-task\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{downstream_registry.ENTRY_POINT_GROUP}]\nacme = acme_task\n"
                                           "acme_by_entry_point = acme_task:ByEntryPoint\n")
    code = ("from superb_redundancy.hub import downstreams as d; from superb_redundancy.hub.install import install; install(); import importlib; "
            "get = lambda n: importlib.import_module(f's3prl.downstream.{n}.expert').DownstreamExpert; "
            "assert get('acme_decorated').__name__ == 'Decorated'; assert get('acme_by_entry_point')().get_dataloader('x') == 'loader'; "
            "assert d.DOWNSTREAMS['acme_by_entry_point'].description == \"Acme's entry-point task\"; "
            "assert get('speech_commands_35').__module__.startswith('superb_redundancy.downstreams')")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_task_definition_and_configs(corpus_root):
    task = tasks.get_task(NAME)
    assert (task.title, task.metric, task.higher_is_better) == ("KS-35", "acc", True)
    overrides = tasks.data_overrides(NAME, corpus_root)
    assert overrides == {"config.downstream_expert.datarc.speech_commands_root":
                         str((Path(corpus_root) / "speech_commands_v0.02").resolve())}
    assert all(Path(p).is_dir() for p in overrides.values())
    superb = yaml.safe_load(tasks.config_path(NAME, "superb").read_text())
    tiny = yaml.safe_load(tasks.config_path(NAME, "tiny").read_text())
    for config in (superb, tiny):
        datarc = config["downstream_expert"]["datarc"]
        assert datarc["speech_commands_root"] == "work/study/data/speech_commands_v0.02"
        assert datarc["clip_seconds"] == 1.0 and config["runner"]["eval_dataloaders"] == ["dev"]
        assert config["downstream_expert"]["modelrc"]["UtteranceLevel"]["pooling"] == "MeanPooling"
    assert superb["downstream_expert"]["modelrc"]["projector_dim"] == 256  # the paper's head: Linear(D, 256)
    assert tiny["runner"]["total_steps"] <= 40 and tiny["downstream_expert"]["datarc"]["num_workers"] == 0


# ---------------------------------------------------------------------------------------------- the runner
def _run_downstream(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(ROOT / "run_downstream.py"), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_runner_trains_and_evaluates_speech_commands_35(tmp_path, tiny_ckpts, corpus_root):
    expdir = tmp_path / "exp"
    data = tasks.format_overrides(tasks.data_overrides(NAME, corpus_root))
    _run_downstream("-m", "train", "-u", "wav2vec2_local", "-k", str(tiny_ckpts["wav2vec2"]), "-d", NAME,
                    "-c", str(ROOT / "superb_redundancy" / "downstream_configs" / NAME / "tiny.yaml"), "-p", str(expdir),
                    "--device", "cpu", "-o", data, cwd=tmp_path)
    assert (expdir / "states-30.ckpt").is_file()
    assert "dev at step 15: " in (expdir / "log.log").read_text()

    # a new process: the name comes back from the checkpoint and is found only because install() runs again
    out = _run_downstream("-m", "evaluate", "-e", str(expdir / "states-30.ckpt"), "--device", "cpu", cwd=tmp_path)
    assert "test acc: " in out.stdout
    metric = read_test_metric(expdir, NAME)
    assert metric.step == 0 and 0.0 <= metric.value <= 1.0
    truth = [line.split() for line in (expdir / "test_truth.txt").read_text().splitlines()]
    predict = [line.split() for line in (expdir / "test_predict.txt").read_text().splitlines()]
    assert len(truth) == len(predict) == 35 * scaled(1) and {w for _, w in truth} == set(CLASSES)
    assert {w for _, w in predict} <= set(CLASSES)
    accuracy = np.mean([t == p for t, p in zip(truth, predict)])
    assert metric.value == pytest.approx(accuracy)
