"""Audio listing and hidden-state extraction."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from superb_redundancy.analysis.hidden_states import iter_hidden_states
from superb_redundancy.core.audio import list_audio, load_wav


def test_list_audio_is_sorted_recursive_and_subsets_are_seeded(tmp_path):
    for name in ("b/2.wav", "a/1.flac", "c.txt", "a/0.wav"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        if name.endswith(".txt"):
            path.write_text("x")
        else:
            soundfile.write(path, np.zeros(160, dtype="float32"), 16000)
    files = list_audio(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/0.wav", "a/1.flac", "b/2.wav"]
    assert list_audio(tmp_path, limit=2, seed=1) == list_audio(tmp_path, limit=2, seed=1)
    with pytest.raises(FileNotFoundError, match="audio folder not found"):
        list_audio(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.wav/\.flac files under"):
        list_audio(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"limit must be >= 1, got 0"):
        list_audio(tmp_path, limit=0)
    # several folders and files (--data A B ...): each one's files in order, a file named twice once
    several = list_audio([tmp_path / "b", tmp_path / "a", tmp_path / "a" / "0.wav"])
    assert [f.relative_to(tmp_path).as_posix() for f in several] == ["b/2.wav", "a/0.wav", "a/1.flac"]
    assert list_audio([tmp_path]) == files and list_audio([str(tmp_path)], limit=2, seed=1) == \
        list_audio(tmp_path, limit=2, seed=1)
    with pytest.raises(FileNotFoundError, match="audio folder not found"):
        list_audio([tmp_path / "a", tmp_path / "missing"])


def test_load_wav_mixes_and_resamples(tmp_path):
    stereo = np.stack([np.ones(8000), -np.ones(8000) * 0.5], axis=1).astype("float32")
    soundfile.write(tmp_path / "s.wav", stereo, 8000)
    wav = load_wav(tmp_path / "s.wav")
    assert wav.shape == (16000,) and wav[4000:12000].mean().item() == pytest.approx(0.25, abs=1e-2)


def test_hidden_states_batches_and_lengths(tiny_ckpts, hub, tmp_path):
    for i, n in enumerate((16000, 8000, 12000)):
        soundfile.write(tmp_path / f"{i}.wav", np.random.default_rng(i).standard_normal(n).astype("float32") * .1, 16000)
    model = hub.wav2vec2_local(ckpt=str(tiny_ckpts["wav2vec2"]))
    batches = list(iter_hidden_states(model, list_audio(tmp_path), batch_size=2, progress=False))
    assert [b[0][0].size(0) for b in batches] == [2, 1] and len(batches[0][0]) == 4
    assert batches[0][1].tolist() == [49, 25]  # 16000/320 rounds to 50, capped at the 49 frames and frame_lengths([16000], 49, 320).tolist() == [49]
