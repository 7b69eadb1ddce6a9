"""Issue 11, sections 2 and 3: bad inputs of the analysis commands are refused before any work, in one line naming
the file; saved files are deterministic, models are identified by content, and outputs that belong together are
written as one unit."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from helpers.audio import noise_clips
from helpers.commands import cli as user_cli
from helpers.commands import in_process


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command through the CLI's main in this process (one case per command also runs as a user does:
    :func:`helpers.commands.cli`, a fresh process)."""
    return in_process(*args, cwd=cwd)


def refused(result: subprocess.CompletedProcess, *named: object) -> str:
    """Exit code 2 and a single stderr line, naming each of ``named``; returns the line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    for name in named:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _clips(folder: Path, count: int = 10, samples: int = 8000) -> Path:
    return noise_clips(folder, count=count, samples=samples)


@pytest.fixture(scope="module")
def good_audio(tmp_path_factory):
    return _clips(tmp_path_factory.mktemp("good_audio"))


# ---------------------------------------------------------------------------------------------- audio
def _bad_folder(root: Path, name: str, write) -> tuple[Path, Path]:
    folder = _clips(root / name, count=3)
    bad = folder / "bad.wav"
    write(bad)
    return folder, bad


def _nan(path: Path) -> None:
    wav = np.zeros(8000, dtype="float32")
    wav[123] = np.nan
    soundfile.write(path, wav, 16000, subtype="FLOAT")  # PCM would turn the NaN into a number


@pytest.mark.parametrize("case, write, message", [
    ("corrupt", lambda p: p.write_bytes(b"RIFF" + os.urandom(500)), "unreadable audio file"),
    ("not_audio", lambda p: p.write_text("hello, I am a text file\n"), "unreadable audio file"),
    ("nan", _nan, "NaN or infinite samples"),
])
def test_bad_audio_is_refused_before_the_model_runs(case, write, message, tmp_path, tiny_ckpts):
    folder, bad = _bad_folder(tmp_path, case, write)
    run = user_cli if case == "corrupt" else cli  # one case as a user runs it: a fresh process
    line = refused(run("similarity", "-u", "wav2vec2_local", "-k", tiny_ckpts["wav2vec2"], "--data", folder,
                       "--output-dir", tmp_path / "sim"), bad)
    assert message in line
    assert not (tmp_path / "sim").exists()


@pytest.mark.slow
def test_nan_audio_is_refused_by_mimic_train_before_the_teacher_runs(tmp_path, tiny_ckpts):
    folder, bad = _bad_folder(tmp_path, "nan", _nan)
    line = refused(user_cli("mimic", "train", "--teacher", tiny_ckpts["wav2vec2"], "--tiny-grid", "--data", folder,
                       "--output-dir", tmp_path / "mimic"), bad)
    assert "NaN or infinite samples" in line
    assert not list(tmp_path.glob("mimic/*.pt"))


def test_clips_too_short_for_a_frame_are_skipped_with_a_count(tmp_path, capsys):
    from superb_redundancy.core.audio import check_audio, list_audio

    folder = _clips(tmp_path / "mixed", count=4)
    soundfile.write(folder / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    soundfile.write(folder / "10ms.wav", np.zeros(160, dtype="float32"), 16000)
    soundfile.write(folder / "25ms.wav", np.zeros(400, dtype="float32"), 16000)  # exactly one frame: kept
    kept = check_audio(list_audio(folder))
    assert sorted(p.name for p in kept) == ["0.wav", "1.wav", "2.wav", "25ms.wav", "3.wav"]
    assert "skipping 2 of 7 clips shorter than 25 ms" in capsys.readouterr().err


def test_only_too_short_clips_and_bad_options_are_refused_before_work(tmp_path, tiny_ckpts, good_audio):
    short = tmp_path / "short"
    short.mkdir()
    soundfile.write(short / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    soundfile.write(short / "10ms.wav", np.zeros(160, dtype="float32"), 16000)
    ckpt = tiny_ckpts["wav2vec2"]
    refused(cli("similarity", "-u", "wav2vec2_local", "-k", ckpt, "--data", short, "--output-dir", tmp_path / "o"),
            short, "shorter than 25 ms")
    refused(cli("similarity", "-u", "wav2vec2_local", "-k", ckpt, "--data", good_audio, "--output-dir",
                tmp_path / "o", "--max-seconds", "0"), "--max-seconds")
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    refused(cli("similarity", "-u", "wav2vec2_local", "-k", ckpt, "--data", good_audio, "--output-dir", a_file), a_file)
    assert a_file.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------- checkpoints
def _checkpoints(root: Path, tiny_ckpts: dict) -> dict[str, Path]:
    """Broken stock checkpoints, each a way a user's -k can be wrong."""
    good = Path(tiny_ckpts["wav2vec2"])
    made = {"missing": root / "missing.pt", "empty": root / "empty.pt", "truncated": root / "truncated.pt",
            "random": root / "random.pt", "hubert": Path(tiny_ckpts["hubert"]), "mismatch": root / "mismatch.pt"}
    made["empty"].write_bytes(b"")
    made["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    made["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["model_cfg"]["encoder_layers"] = 4  # the config says 4 layers, the weights hold 3
    torch.save(checkpoint, made["mismatch"])
    return made


@pytest.mark.parametrize("case, message", [
    ("missing", "checkpoint not found"),
    ("empty", "empty or truncated file"),
    ("truncated", "corrupt or unreadable checkpoint"),
    ("random", "not a torch checkpoint"),
    ("hubert", "is a hubert checkpoint, not wav2vec2"),
    ("mismatch", "weights do not fit its config"),
])
def test_bad_stock_checkpoint_is_one_line_naming_it(case, message, tmp_path, tiny_ckpts, good_audio):
    bad = _checkpoints(tmp_path, tiny_ckpts)[case]
    line = refused(cli("similarity", "-u", "wav2vec2_local", "-k", bad, "--data", good_audio,
                       "--output-dir", tmp_path / "sim"), bad)
    assert message in line
    assert "weights_only` set to `False`" not in line  # never the advice to load it unsafely


def test_family_checks_recognise_the_family(tiny_ckpts):
    from superb_redundancy.models.families import FAMILIES, family_of_checkpoint

    for name, path in tiny_ckpts.items():
        checkpoint = torch.load(path, weights_only=True)
        assert family_of_checkpoint(checkpoint).name == name
        assert [f for f, family in FAMILIES.items() if family.matches(checkpoint)] == [name]  # HuBERT is no wav2vec2
        assert FAMILIES[name].weights_mismatch(checkpoint) is None


@pytest.mark.slow
def test_prune_spec_refuses_a_base_of_another_family_or_too_few_layers(tmp_path, tiny_ckpts):
    hubert = tiny_ckpts["hubert"]
    refused(cli("prune-spec", "--family", "wav2vec2", "--base", hubert, "--drop", "1", "--artifact",
                tmp_path / "pruned.pt"), hubert, "is a hubert checkpoint")
    base = tiny_ckpts["wav2vec2"]
    refused(cli("prune-spec", "--family", "wav2vec2", "--base", base, "--drop", "7", "--output",
                tmp_path / "spec.yaml"), base, "drop_layers [7] out of range")
    assert not (tmp_path / "pruned.pt").exists() and not (tmp_path / "spec.yaml").exists()
    written = user_cli("prune-spec", "--family", "wav2vec2", "--base", base, "--drop", "1", "--output", "spec.yaml",
                       cwd=tmp_path)  # a file in the current folder is fine (only a unit folder may not be it)
    assert written.returncode == 0 and (tmp_path / "spec.yaml").is_file(), written.stderr[-2000:]


def test_prune_refuses_a_similarity_report_of_another_model(tmp_path, tiny_ckpts):
    from superb_redundancy.analysis.report import SimilaritySettings, report_from_matrices
    from superb_redundancy.core.files import checkpoint_sha256
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    base = Path(tiny_ckpts["wav2vec2"])
    other = write_tiny_checkpoint("wav2vec2", tmp_path / "other.pt", seed=1)  # same architecture, other weights
    matrices = {m: np.eye(4) * 0.5 + 0.5 for m in ("cosine", "cka", "knn")}
    report = report_from_matrices(matrices, SimilaritySettings(permutations=0), 24,
                                  {"upstream": "wav2vec2_local", "ckpt": str(other),
                                   "model_sha256": checkpoint_sha256(other)})
    report.save(tmp_path / "sim")
    args = ["prune", "--family", "wav2vec2", "--objective", "knn-bi", "--amount", "1", "--similarity",
            tmp_path / "sim", "--output", tmp_path / "spec.yaml"]
    refused(cli(*args, "--base", base), tmp_path / "sim", base, "computed on another model")
    assert not (tmp_path / "spec.yaml").exists()
    # the same weights in another file (bytes differ, content does not) are the same model
    copy = tmp_path / "copy_of_other.pt"
    torch.save(torch.load(other, weights_only=True), copy)
    assert sha256(copy) != sha256(other)
    result = cli(*args, "--base", copy)
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------------------------------------- files
def test_saves_are_byte_identical(tmp_path, tiny_ckpts):
    from superb_redundancy.core.files import torch_save
    from superb_redundancy.models.tiny import write_tiny_checkpoint
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import save_pruned

    obj = {"w": torch.randn(3, 4), "cfg": {"a": 1}}
    assert sha256(torch_save(obj, tmp_path / "a.pt")) == sha256(torch_save(obj, tmp_path / "b.pt"))
    assert sha256(write_tiny_checkpoint("hubert", tmp_path / "t1.pt")) == \
        sha256(write_tiny_checkpoint("hubert", tmp_path / "t2.pt"))
    spec = PruneSpec(base=str(tiny_ckpts["wavlm"]), drop_layers=[1])
    first = save_pruned("wavlm", spec, tmp_path / "one" / "pruned.pt")
    second = save_pruned("wavlm", spec, tmp_path / "two" / "other_name.pt")
    assert sha256(first) == sha256(second)


def test_content_hash_is_of_weights_and_config_not_bytes(tmp_path, tiny_ckpts):
    from superb_redundancy.core.files import checkpoint_sha256, content_sha256, model_sha256

    checkpoint = torch.load(tiny_ckpts["wav2vec2"], weights_only=True)
    torch.save(checkpoint, tmp_path / "resaved.pt")  # another archive name inside the zip: other bytes
    assert checkpoint_sha256(tmp_path / "resaved.pt") == checkpoint_sha256(tiny_ckpts["wav2vec2"])
    reordered = {k: checkpoint[k] for k in reversed(list(checkpoint))}
    assert content_sha256(reordered) == content_sha256(checkpoint)
    changed = dict(checkpoint, model_weight=dict(checkpoint["model_weight"]))
    changed["model_weight"]["mask_emb"] = changed["model_weight"]["mask_emb"] + 1e-6
    assert content_sha256(changed) != content_sha256(checkpoint)
    assert content_sha256({"w": torch.zeros(2, dtype=torch.float16)}) != content_sha256({"w": torch.zeros(4, dtype=torch.int8)})
    assert content_sha256({"w": torch.zeros(2, 3)}) != content_sha256({"w": torch.zeros(3, 2)})
    # provenance (where it came from, how training went) is not identity
    assert model_sha256({"w": torch.ones(1), "training": {"seconds": 1.0}}) == \
        model_sha256({"w": torch.ones(1), "training": {"seconds": 2.0}})
    assert checkpoint_sha256(tmp_path / "missing.pt") is None


def test_mimic_teacher_check_accepts_a_regenerated_identical_teacher(tmp_path, tiny_ckpts):
    from superb_redundancy.mimic.artifact import load_mimic_artifact
    from superb_redundancy.mimic.config import MimicConfig, MimicError
    from superb_redundancy.mimic.baselines import init_artifact

    config = MimicConfig.tiny(kind="linear")
    artifact = init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "nonmimic.pt")
    regenerated = tmp_path / "regenerated.pt"
    torch.save(torch.load(tiny_ckpts["wav2vec2"], weights_only=True), regenerated)
    assert sha256(regenerated) != sha256(tiny_ckpts["wav2vec2"])
    load_mimic_artifact(artifact, teacher=str(regenerated))
    with pytest.raises(MimicError, match="was distilled from teacher"):
        load_mimic_artifact(artifact, teacher=str(tiny_ckpts["hubert"]))


def test_teacher_cache_is_reused_for_a_regenerated_identical_teacher(tmp_path, tiny_ckpts, monkeypatch):
    from superb_redundancy.distill import teacher_cache

    audio = _clips(tmp_path / "audio", count=3)
    first = teacher_cache.build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "cache", progress=False)
    regenerated = tmp_path / "regenerated.pt"
    torch.save(torch.load(tiny_ckpts["wav2vec2"], weights_only=True), regenerated)
    monkeypatch.setattr(teacher_cache.Teacher, "run", lambda *a, **k: pytest.fail("the teacher ran again"))
    again = teacher_cache.build_teacher_cache(regenerated, audio, tmp_path / "cache", progress=False)
    assert again.manifest["created"] == first.manifest["created"]


# ---------------------------------------------------------------------------------------------- units of files
def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_atomic_dir_replaces_the_unit_and_keeps_other_files(tmp_path):
    from superb_redundancy.core.files import atomic_dir

    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.json").write_text("old")
        (tmp / "a.png").write_text("old")
        (tmp / "gone.png").write_text("old")
    (final / "notes.txt").write_text("the user's")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(final, unit=("a.*", "gone.png")) as tmp:
            (tmp / "a.json").write_text("new")
            raise KeyboardInterrupt  # killed before the figure was written
    assert (final / "a.json").read_text() == "old" and (final / "a.png").read_text() == "old"
    with atomic_dir(final, unit=("a.*", "gone.png")) as tmp:
        (tmp / "a.json").write_text("new")
        (tmp / "a.png").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in final.iterdir()) == ["a.json", "a.png", "notes.txt"]
    assert (final / "a.json").read_text() == "new" and (final / "notes.txt").read_text() == "the user's"


def test_atomic_dir_never_swaps_the_current_folder(tmp_path, monkeypatch):
    from superb_redundancy.core.files import atomic_dir, check_output_dir

    (tmp_path / "here" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here" / "deeper")
    for folder in (".", "..", str(tmp_path / "here")):
        with pytest.raises(ValueError, match="current folder"):
            check_output_dir(folder)
        with pytest.raises(ValueError, match="current folder"):
            with atomic_dir(folder):
                pass
    assert (tmp_path / "here" / "deeper").is_dir()


def test_leftovers_of_a_killed_run_are_cleaned_up_by_the_next(tmp_path):
    from superb_redundancy.core.files import atomic_dir

    pid = _dead_pid()
    final = tmp_path / "out"
    final.mkdir()
    (final / "a.json").write_text("old")
    stale = tmp_path / f".out.tmp-{pid}"  # killed while writing its unit
    stale.mkdir()
    (stale / "a.json").write_text("half")
    with atomic_dir(final) as tmp:
        (tmp / "a.json").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # killed between renaming the old folder away and the new one in: the old unit comes back whole
    os.replace(final, tmp_path / f".out.old-{pid}")
    with atomic_dir(tmp_path / "elsewhere"):
        pass
    assert not final.exists()
    with atomic_dir(final) as tmp:
        assert (final / "a.json").read_text() == "new"  # restored before this unit is written
        (tmp / "a.json").write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]
    assert (final / "a.json").read_text() == "newer"


def test_similarity_report_and_figure_are_one_unit(tmp_path, monkeypatch):
    from superb_redundancy.analysis import report as analysis
    from superb_redundancy.analysis.report import SimilaritySettings, report_from_matrices

    report = report_from_matrices({m: np.eye(4) for m in ("cosine", "cka", "knn")},
                                  SimilaritySettings(permutations=0), 10)
    report.save(tmp_path / "sim")
    before = {name: sha256(tmp_path / "sim" / name) for name in ("similarity.json", "similarity.png")}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "plot_similarity", killed)
    report.num_samples = 11
    with pytest.raises(KeyboardInterrupt):
        report.save(tmp_path / "sim")
    assert {name: sha256(tmp_path / "sim" / name) for name in before} == before  # no new JSON beside the old figure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]
