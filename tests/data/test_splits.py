"""The audio a stage reads is one official split of a named task (data/splits.py): Speech Commands v0.02 by its
list files, never a ``_background_noise_`` recording, no clip in two splits; a clip longer than the task allows is
left out and counted; a study reads its own task's corpus (KS-35: v0.02, not v0.01)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from superb_redundancy.data.splits import SplitError, task_clips
from helpers.studies import corpus_data


def _v2(corpus_root: Path) -> dict:
    return corpus_data(corpus_root, ["speech_commands_35"])["speech_commands_35"]


def _listed(root: Path, name: str) -> set[Path]:
    return {(root / line).resolve() for line in (root / name).read_text().split()}


def test_speech_commands_v2_is_split_by_its_lists_without_the_noise_recordings(corpus_root):
    """Fails on the main before issue 25: a study's stages listed every wav under the root (the minute-long
    background recordings, the dev and test clips) for similarity and step 1 alike."""
    root = Path(_v2(corpus_root)["speech_commands_root"])
    splits = {split: task_clips("speech_commands_35", split, datarc=_v2(corpus_root)) for split in ("train", "dev", "test")}
    files = {split: set(clips.files) for split, clips in splits.items()}
    assert not any("_background_noise_" in str(p) for clips in files.values() for p in clips)
    assert files["dev"] == _listed(root, "validation_list.txt") and files["test"] == _listed(root, "testing_list.txt")
    assert not files["train"] & files["dev"] and not files["train"] & files["test"] and not files["dev"] & files["test"]
    words = {p.resolve() for p in root.glob("*/*.wav") if p.parent.name != "_background_noise_"}
    assert files["train"] | files["dev"] | files["test"] == words
    # the layout's quirks are there to be read: minute-long noise, clips shorter than 1 s (kept: only longer is cut)
    assert min(soundfile.info(str(p)).duration for p in (root / "_background_noise_").glob("*.wav")) > 59
    assert any(soundfile.info(str(p)).frames < 16000 for p in files["train"])
    record = splits["dev"].record()
    assert (record["task"], record["split"], record["clips"], record["of"], record["too_long"]) == \
        ("speech_commands_35", "dev", len(files["dev"]), len(files["dev"]), 0)
    # the digest names the list, not where it is mounted
    assert record["sha256"] == task_clips("speech_commands_35", "dev", datarc=_v2(corpus_root)).record()["sha256"]
    subset = task_clips("speech_commands_35", "train", datarc=_v2(corpus_root), limit=5)
    assert len(subset.files) == 5 and set(subset.files) <= files["train"] and subset.record()["of"] == len(files["train"])


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(int(seconds * 16000), dtype=np.float32), 16000, subtype="PCM_16")


def test_a_clip_longer_than_the_task_allows_is_left_out_and_counted(tmp_path):
    from superb_redundancy.data.speech_commands_v2 import CLASSES

    root = tmp_path / "v2"
    for word in CLASSES:
        _wav(root / word / "a_nohash_0.wav", 1.0)
    for name, seconds in (("yes/b_nohash_0.wav", 1.5), ("no/b_nohash_0.wav", 0.6), ("no/c_nohash_0.wav", 1.0),
                          ("_background_noise_/white_noise.wav", 61.0)):
        _wav(root / name, seconds)
    (root / "validation_list.txt").write_text("no/c_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("")
    clips = task_clips("speech_commands_35", "train", datarc={"speech_commands_root": str(root)})
    kept = {p.relative_to(root.resolve()).as_posix() for p in clips.files}
    assert "yes/b_nohash_0.wav" not in kept and "no/b_nohash_0.wav" in kept and len(kept) == 36
    assert (clips.record()["too_long"], clips.record()["of"]) == (1, 37)
    with pytest.raises(SplitError, match="the test split of speech_commands_35 holds no clip"):
        task_clips("speech_commands_35", "test", datarc={"speech_commands_root": str(root)})


def _study(tmp_path: Path, corpus_root: Path, upstream: dict):
    from superb_redundancy.study.config import StudyConfig

    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data").symlink_to(corpus_root, target_is_directory=True)  # the study's synthetic corpus
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "workdir": str(tmp_path / "work"), "data": {"synthetic": {"scale": 0.1}},
                                    "upstreams": [{"name": "w", "base": "tiny", **upstream}],
                                    "tasks": ["speech_commands_35", "speech_commands"]}))
    return StudyConfig.from_yaml(path)


@pytest.mark.parametrize("upstream, folder", [
    ({"finetune": {"task": "speech_commands_35", "steps": 1}}, "speech_commands_v0.02"),
    ({"audio_task": "speech_commands_35"}, "speech_commands_v0.02"),
    ({}, "speech_commands_v0.01"),
])
def test_a_study_reads_the_split_of_its_own_task(tmp_path, corpus_root, upstream, folder):
    """Fails on the main before issue 25: without ``data:`` every study read v0.01, KS-35 ones included."""
    from superb_redundancy.study.steps import split_audio

    study = _study(tmp_path, corpus_root, upstream)
    clips = split_audio(study, study.upstreams[0], "dev")
    assert clips.split == "dev" and {p.relative_to(corpus_root.resolve()).parts[0] for p in clips.files} == {folder}


def test_a_folder_of_loose_audio_is_refused_in_a_study(tmp_path):
    from superb_redundancy.study.config import StudyConfig

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "workdir": str(tmp_path / "w"),
                                    "upstreams": [{"name": "w", "similarity": {"data": "/audio"}}],
                                    "tasks": ["speech_commands"]}))
    problems = StudyConfig.load(path)[1]
    assert len(problems) == 1 and problems[0].startswith("upstreams[w].similarity.data: a study reads a task's")
