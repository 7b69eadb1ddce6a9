"""What each task's corpus holds: the clip plans and the metadata files, in the layouts s3prl 0.4.18 reads.

Each ``plan_*`` function returns a :class:`TaskPlan`: the clips (a relative path, what to say and with which
voice, or which noise) and a ``finalize`` callback that writes the task's lists/JSON/CSV once the audio exists.
Paths are POSIX and relative to the corpus root; the top-level folders a task owns are its ``outputs``.

Layouts (``<root>`` is the corpus root):

* speech_commands: ``speech_commands_v0.01/<word>/<spk>_nohash_<n>.wav`` (10 commands + unknown words),
  ``_background_noise_/*.wav`` (5 s), ``validation_list.txt`` / ``testing_list.txt``;
  ``speech_commands_test_set_v0.01/<class>/*.wav`` (the 12 classes, ``_silence_`` and ``_unknown_`` included);
  ``speech_commands_v0.02/<word>/...`` (35 words) with its own lists.
* voxceleb1: ``voxceleb1/{dev,test}/wav/id1000N/<video>/<nnnnn>.wav`` and ``voxceleb1/iden_split.txt``.
* emotion: ``IEMOCAP/SessionN/sentences/wav/<dialog>/<utt>.wav`` and
  ``IEMOCAP/meta_data/SessionN/{train,test}_meta_data.json`` (leave one session out).
* asr: ``LibriSpeech/<split>/<spk>/<chap>/<spk>-<chap>-<nnnn>.flac`` + ``<spk>-<chap>.trans.txt`` and
  ``len_for_bucket/<split>.csv``.

Sizes at scale 1 (what a score needs, and no more: every training clip costs time in each downstream run on a
small CPU): KS 6k training clips and a 408-clip test set (12 classes x 34); SID 16 speakers, 208 test clips;
ER 200 test clips per session (50 per emotion); ASR 100 test-clean sentences. Inside a class clips vary by
speaker, per-clip rate/pitch/range jitter, level, additive noise at several SNRs and (KS) the word's position; the
planner draws all of it (a :class:`~.speech.Render` per clip), so the plan itself records the variation.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from superb_redundancy.data.corpus.speech import Render, Voice, clip_rng
from superb_redundancy.data.corpus.text import KS_COMMANDS, KS_UNKNOWN_WORDS, KS_V2_WORDS, sentence

__all__ = [
    "TASKS",
    "Clip",
    "TaskPlan",
    "PLANNERS",
    "speech_commands_bucket",
    "EMOTIONS",
    "ASR_SPLITS",
    "VOXCELEB_FIRST_ID",
    "Variation",
]

TASKS = ("speech_commands", "voxceleb1", "emotion", "asr")
EMOTIONS = ("neu", "hap", "ang", "sad")  # label order of s3prl's IEMOCAP preprocessing
ASR_SPLITS = ("train-clean-100", "dev-clean", "test-clean")
VOXCELEB_FIRST_ID = 10001  # s3prl: label = int(id[2:]) - 10001

_ACCENTS = ("en", "en-US", "en-GB-x-rp", "en-GB-scotland", "en-029", "en-US-nyc", "en-GB-x-gbclan",
            "en-GB-x-gbcwmd")
_MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt")
_FEMALE = ("f1", "f2", "f3", "f4", "f5", "klatt3")


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the corpus root, POSIX
    unit: str  # clips of one unit are synthesised in order, in one fresh process
    text: Optional[str] = None  # speech clips
    voice: Optional[Voice] = None
    render: Render = Render()
    noise: Optional[tuple[str, float, int]] = None  # noise clips: (kind, RMS level in dBFS, samples)

    @property
    def format(self) -> str:
        return "FLAC" if self.path.endswith(".flac") else "WAV"


@dataclass
class TaskPlan:
    task: str
    outputs: tuple[str, ...]  # top-level folders under the root that this task owns
    clips: list[Clip]
    finalize: Callable[[Path, dict[str, int]], None] = field(repr=False)  # (build root, {path: samples})


def _count(base: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(base * scale)))


class _Voices:
    """Distinct speaker voices: accent x variant without repeats, then pitch/rate/range bases per speaker."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.pools = {
            gender: [f"{a}+{v}" for a in _ACCENTS for v in variants]
            for gender, variants in (("m", _MALE), ("f", _FEMALE))
        }
        for pool in self.pools.values():
            rng.shuffle(pool)
        self.used = {"m": 0, "f": 0}

    def new(self, gender: Optional[str] = None) -> Voice:
        rng = self.rng
        gender = gender or ("m" if rng.random() < 0.5 else "f")
        pool = self.pools[gender]
        name = pool[self.used[gender] % len(pool)]
        self.used[gender] += 1
        low, high = (22, 55) if gender == "m" else (45, 80)
        return Voice(name=name, rate=int(rng.integers(150, 196)), pitch=int(rng.integers(low, high)),
                     range=int(rng.integers(30, 80)))


def _jitter(voice: Voice, rng: np.random.Generator, rate: float = 0.08, pitch: int = 5) -> Voice:
    """Per-utterance variation of one speaker (nobody says a word the same way twice)."""
    return voice.with_changes(rate=round(voice.rate * rng.uniform(1 - rate, 1 + rate)),
                              pitch=voice.pitch + int(rng.integers(-pitch, pitch + 1)),
                              range=voice.range + int(rng.integers(-8, 9)))


_NOISE_KINDS = ("white", "pink", "brown", "hum")


@dataclass(frozen=True)
class Variation:
    """The ranges a task's renders are drawn from: uniform ranges, and ``snr_db`` levels (one picked per clip,
    so that every class holds clean-ish and noisy clips alike)."""

    snr_db: tuple[float, ...]
    noise: tuple[str, ...] = _NOISE_KINDS
    peak_db: Optional[tuple[float, float]] = (-9.0, -3.0)  # None: espeak's own level
    gain_db: tuple[float, float] = (-1.5, 1.5)
    length: Optional[int] = None  # fixed-length clips (KS) ...
    shift: float = 0.0  # ... with the word moved up to this many seconds off the centre
    pad: tuple[float, float] = (0.05, 0.25)  # variable-length clips: room tone before / after, seconds

    def draw(self, rng: np.random.Generator) -> Render:
        return Render(length=self.length, shift=float(rng.uniform(-self.shift, self.shift)),
                      pad=(float(rng.uniform(*self.pad)), float(rng.uniform(*self.pad))),
                      peak_db=None if self.peak_db is None else float(rng.uniform(*self.peak_db)),
                      gain_db=float(rng.uniform(*self.gain_db)),
                      snr_db=float(self.snr_db[int(rng.integers(len(self.snr_db)))]),
                      noise=self.noise[int(rng.integers(len(self.noise)))])


# --------------------------------------------------------------------------------------------- speech_commands
_KS_MAX_PER_CLASS = 2 ** 27 - 1  # the Speech Commands split rule (the dataset's README; s3prl uses it too)


def speech_commands_bucket(speaker: str) -> float:
    """The speaker's split percentage: < 10 validation, < 20 testing, else training (by sha1 of the speaker)."""
    value = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    return (value % (_KS_MAX_PER_CLASS + 1)) * (100.0 / _KS_MAX_PER_CLASS)


def _ks_split(speaker: str) -> str:
    bucket = speech_commands_bucket(speaker)
    return "validation" if bucket < 10 else "testing" if bucket < 20 else "training"


def _ks_speakers(rng: np.random.Generator, voices: _Voices, counts: dict[str, int], taken: set[str]):
    """Speaker ids (8 hex digits, like the dataset's) whose hash falls in each split, ``counts[split]`` each."""
    chosen: dict[str, list[str]] = {split: [] for split in counts}
    while any(len(chosen[s]) < n for s, n in counts.items()):
        speaker = f"{int(rng.integers(0, 2 ** 32)):08x}"
        split = _ks_split(speaker)
        if speaker in taken or split not in chosen or len(chosen[split]) >= counts[split]:
            continue
        taken.add(speaker)
        chosen[split].append(speaker)
    return [(speaker, voices.new()) for split in counts for speaker in chosen[split]]


# Peaks up to -4 dBFS leave room for 10 dB SNR noise without clipping; +-0.2 s moves a ~0.5 s word across most
# of the 1 s clip, as in the real recordings.
_KS_VARIATION = Variation(length=16000, shift=0.2, peak_db=(-20.0, -4.0), gain_db=(0.0, 0.0),
                          snr_db=(10.0, 15.0, 20.0, 30.0))
# Scale-1 speakers. v0.01 root, by speaker hash: training / validation / testing (s3prl drops the last); each says
# every command twice and every unknown word once (30 clips): 6,000 training clips, 300 dev. With 2,400 (80
# speakers) the 8-layer model fitted its training clips by the 40th epoch and kept 0.8 on the test set.
_KS_SPEAKERS = {"training": 200, "validation": 10, "testing": 2}
_KS_REPS = {**{word: 2 for word in KS_COMMANDS}, **{word: 1 for word in KS_UNKNOWN_WORDS}}
_KS_TEST_SPEAKERS = 34  # the test set: one clip per class per speaker, 12 x 34 = 408 clips
# Speech Commands v0.02 (the paper's 35 words), as the release is laid out, for rehearsing the study on: every
# speaker says every word once (35 x 10 = 350 clips at scale 1). As in the release, about a quarter of the word
# clips are shorter than 1 s (0.5-0.95 s here), the rest exactly 16000 samples; _background_noise_ holds 6 recordings
# of about a minute (the release's file names) and a README.md; README.md and LICENSE lie at the root.
_KS_V2_SPEAKERS = {"training": 6, "validation": 2, "testing": 2}
_KS_V2_SHORT = 0.25  # the fraction of the root's word clips that are shorter than 1 s
_KS_V2_SHORT_SECONDS = (0.5, 0.95)
_KS_V2_NOISE = (("doing_the_dishes", "brown"), ("dude_miaowing", "hum"), ("exercise_bike", "brown"),
                ("pink_noise", "pink"), ("running_tap", "white"), ("white_noise", "white"))
_KS_V2_NOISE_SECONDS = (60.0, 62.0)
# The separate v0.02 test archive (the paper's test set): new speakers, each saying every command word once and a
# few of the 25 other words (filed under _unknown_/ with the word in the name); as many _silence_ clips as speakers.
_KS_V2_TEST_SPEAKERS = 3
_KS_V2_TEST_UNKNOWN = 4  # other words per test speaker
KS_V2_OTHER_WORDS = tuple(word for word in KS_V2_WORDS if word not in KS_COMMANDS)  # the test archive's _unknown_


def _ks_clip(path: str, unit: str, word: str, voice: Voice, rng: np.random.Generator) -> Clip:
    return Clip(path=path, unit=unit, text=word, voice=_jitter(voice, rng), render=_KS_VARIATION.draw(rng))


def _ks_word_clips(folder: str, unit: str, reps: dict[str, int], speakers, rng) -> list[Clip]:
    return [_ks_clip(f"{folder}/{word}/{speaker}_nohash_{rep}.wav", unit, word, voice, rng)
            for word, n in reps.items() for speaker, voice in speakers for rep in range(n)]


def _ks_background(folder: str, unit: str, rng) -> list[Clip]:
    # s3prl's training "_silence_" is random 1 s crops of these: a loud and a quiet file per kind cover the
    # levels of the test set's silence clips (-50..-25 dBFS).
    return [
        Clip(path=f"{folder}/_background_noise_/{kind}_noise{suffix}.wav", unit=unit,
             noise=(kind, float(rng.uniform(*levels)), 5 * 16000))
        for kind in _NOISE_KINDS for suffix, levels in (("", (-36.0, -24.0)), ("_quiet", (-50.0, -37.0)))
    ]


def _new_speakers(rng: np.random.Generator, voices: _Voices, n: int, taken: set[str]):
    """``n`` speaker ids not in ``taken`` (any split hash: a test archive's speakers), with their voices."""
    speakers = []
    while len(speakers) < n:
        speaker = f"{int(rng.integers(0, 2 ** 32)):08x}"
        if speaker not in taken:
            taken.add(speaker)
            speakers.append((speaker, voices.new()))
    return speakers


# The text files of the v0.02 release's root (what they say here is ours: this is no copy of Google's dataset).
_KS_V2_TEXTS = {
    "README.md": (
        "# Synthetic Speech Commands v0.02\n\n"
        "Written by superb-redundancy's corpus generator in the layout of Google's Speech Commands v0.02 release\n"
        "(speech_commands_v0.02.tar.gz): one folder per word (35 words) of 16 kHz mono 16-bit WAV clips named\n"
        "`<speaker>_nohash_<n>.wav`, at most one second long; `_background_noise_/` with long noise recordings;\n"
        "`validation_list.txt` and `testing_list.txt` (the split by the hash of the speaker id). The speech is\n"
        "espeak-ng's, not recorded.\n"
    ),
    "LICENSE": (
        "The synthetic clips in this folder were generated by superb-redundancy from espeak-ng speech and noise\n"
        "and are free to use for any purpose. Google's Speech Commands dataset, whose layout they follow, is\n"
        "distributed under the Creative Commons BY 4.0 license.\n"
    ),
    "_background_noise_/README.md": (
        "The noise recordings of this folder are about a minute long each (not one-second clips): training code\n"
        "cuts one-second windows out of them for the silence class. They are synthetic noise (white, pink, brown,\n"
        "mains hum), named after the recordings of the Speech Commands release.\n"
    ),
}


def _write_ks_lists(root: Path, folder: str) -> None:
    lists = {"validation": [], "testing": []}
    for wav in sorted((root / folder).glob("*/*.wav")):
        if wav.parent.name == "_background_noise_":
            continue
        split = _ks_split(wav.name.split("_nohash_")[0])
        if split in lists:
            lists[split].append(f"{wav.parent.name}/{wav.name}")
    for split, lines in lists.items():
        (root / folder / f"{split}_list.txt").write_text("".join(line + "\n" for line in sorted(lines)))


def plan_speech_commands(scale: float, seed: int) -> TaskPlan:
    rng = clip_rng(seed, "speech_commands", "plan")
    voices = _Voices(rng)
    taken: set[str] = set()
    v1, test, v2 = "speech_commands_v0.01", "speech_commands_test_set_v0.01", "speech_commands_v0.02"
    test2 = "speech_commands_test_set_v0.02"

    speakers = _ks_speakers(rng, voices, {k: _count(n, scale) for k, n in _KS_SPEAKERS.items()}, taken)
    clips = _ks_word_clips(v1, "ks-v0.01", _KS_REPS, speakers, rng)
    clips += _ks_background(v1, "ks-v0.01", rng)

    # v0.01 test set: one folder per class, new speakers, each saying every command and one unknown word once;
    # as many silence clips as any other class
    test_speakers = _new_speakers(rng, voices, _count(_KS_TEST_SPEAKERS, scale), taken)
    clips += _ks_word_clips(test, "ks-test", {word: 1 for word in KS_COMMANDS}, test_speakers, rng)
    for i, (speaker, voice) in enumerate(test_speakers):
        word = KS_UNKNOWN_WORDS[i % len(KS_UNKNOWN_WORDS)]
        clips.append(_ks_clip(f"{test}/_unknown_/{speaker}_nohash_0.wav", "ks-test", word, voice, rng))
    for i in range(len(test_speakers)):
        kind = _NOISE_KINDS[i % len(_NOISE_KINDS)]
        clips.append(Clip(path=f"{test}/_silence_/{kind}{i:03d}_nohash_0.wav", unit="ks-test",
                          noise=(kind, float(rng.uniform(-50, -25)), 16000)))

    # v0.02 root: every word once per speaker, a quarter of the clips cut short; long background recordings
    speakers2 = _ks_speakers(rng, voices, {k: _count(n, scale) for k, n in _KS_V2_SPEAKERS.items()}, taken)
    words2 = _ks_word_clips(v2, "ks-v0.02", {word: 1 for word in KS_V2_WORDS}, speakers2, rng)
    short = rng.choice(len(words2), size=int(round(_KS_V2_SHORT * len(words2))), replace=False)
    for i in sorted(int(i) for i in short):
        seconds = float(rng.uniform(*_KS_V2_SHORT_SECONDS))
        words2[i] = replace(words2[i], render=replace(words2[i].render, length=int(seconds * 16000)))
    clips += words2
    clips += [Clip(path=f"{v2}/_background_noise_/{name}.wav", unit="ks-v0.02",
                   noise=(kind, float(rng.uniform(-36.0, -24.0)), int(rng.uniform(*_KS_V2_NOISE_SECONDS) * 16000)))
              for name, kind in _KS_V2_NOISE]

    # v0.02 test archive: <command>/, _unknown_/<word>_<spk>_nohash_0.wav (the other words), _silence_/ (1 s noise)
    test2_speakers = _new_speakers(rng, voices, _count(_KS_V2_TEST_SPEAKERS, scale), taken)
    clips += _ks_word_clips(test2, "ks-test-v0.02", {word: 1 for word in KS_COMMANDS}, test2_speakers, rng)
    others = [KS_V2_OTHER_WORDS[int(i)] for i in rng.permutation(len(KS_V2_OTHER_WORDS))]
    for i, (speaker, voice) in enumerate(test2_speakers):
        for j in range(_KS_V2_TEST_UNKNOWN):
            word = others[(i * _KS_V2_TEST_UNKNOWN + j) % len(others)]
            clips.append(_ks_clip(f"{test2}/_unknown_/{word}_{speaker}_nohash_0.wav", "ks-test-v0.02", word, voice,
                                  rng))
    for i in range(len(test2_speakers)):
        kind = _NOISE_KINDS[i % len(_NOISE_KINDS)]
        clips.append(Clip(path=f"{test2}/_silence_/{kind}{i:03d}_nohash_0.wav", unit="ks-test-v0.02",
                          noise=(kind, float(rng.uniform(-50, -25)), 16000)))

    def finalize(root: Path, lengths: dict[str, int]) -> None:
        _write_ks_lists(root, v1)
        _write_ks_lists(root, v2)
        for name, text in _KS_V2_TEXTS.items():
            (root / v2 / name).write_text(text)

    return TaskPlan("speech_commands", (v1, test, v2, test2), clips, finalize)


# --------------------------------------------------------------------------------------------------- voxceleb1
_SENTENCE_VARIATION = Variation(pad=(0.1, 0.4), peak_db=(-15.0, -3.0), snr_db=(10.0, 15.0, 20.0, 30.0))
_VIDEO_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _video_id(rng) -> str:
    return "".join(_VIDEO_CHARS[int(i)] for i in rng.integers(0, len(_VIDEO_CHARS), 11))


def plan_voxceleb1(scale: float, seed: int) -> TaskPlan:
    rng = clip_rng(seed, "voxceleb1", "plan")
    voices = _Voices(rng)
    n_speakers = _count(16, scale, minimum=2)
    n_in_test_dir = max(1, n_speakers // 5)  # like VoxCeleb1: some speakers live under test/wav
    per_split = {1: 24, 2: 4, 3: 13}  # iden_split: 1 train, 2 dev, 3 test (16 x 13 = 208 test clips)
    clips, split_lines = [], []
    for s in range(n_speakers):
        speaker = f"id{VOXCELEB_FIRST_ID + s}"
        folder = "test" if s >= n_speakers - n_in_test_dir else "dev"
        voice = voices.new("m" if s % 2 == 0 else "f")
        videos = [_video_id(rng) for _ in range(6)]
        labels = [split for split, n in per_split.items() for _ in range(n)]
        rng.shuffle(labels)
        numbers = {video: 0 for video in videos}
        for i, split in enumerate(labels):
            video = videos[i % len(videos)]
            numbers[video] += 1
            rel = f"{speaker}/{video}/{numbers[video]:05d}.wav"
            clips.append(Clip(path=f"voxceleb1/{folder}/wav/{rel}", unit="voxceleb1", text=sentence(rng),
                              voice=_jitter(voice, rng), render=_SENTENCE_VARIATION.draw(rng)))
            split_lines.append(f"{split} {rel}")

    def finalize(root: Path, lengths: dict[str, int]) -> None:
        lines = sorted(split_lines, key=lambda line: line.split()[1])
        (root / "voxceleb1" / "iden_split.txt").write_text("".join(line + "\n" for line in lines))

    return TaskPlan("voxceleb1", ("voxceleb1",), clips, finalize)


# ----------------------------------------------------------------------------------------------------- emotion
# Prosody per emotion, relative to the speaker's own voice: rate factor, pitch shift, pitch range, amplitude.
_EMOTION_PROSODY = {
    "neu": dict(rate=1.00, pitch=0, range=None, volume=100, wordgap=0),
    "hap": dict(rate=1.12, pitch=14, range=90, volume=120, wordgap=0),
    "ang": dict(rate=1.18, pitch=4, range=75, volume=170, wordgap=0),
    "sad": dict(rate=0.72, pitch=-14, range=12, volume=60, wordgap=2),
}
# No peak normalisation: loudness is one of the emotion cues. 3.5 dB less gain on average gives the loud
# "ang" voice (espeak's peaks reach full scale) room for the noise; the noise stays >= 15 dB below the speech,
# not to drown the quiet "sad" voice's cues.
_EMOTION_VARIATION = Variation(pad=(0.1, 0.3), peak_db=None, gain_db=(-5.0, -2.0), snr_db=(15.0, 20.0, 30.0))


def emotion_voice(base: Voice, emotion: str) -> Voice:
    p = _EMOTION_PROSODY[emotion]
    return base.with_changes(rate=round(base.rate * p["rate"]), pitch=base.pitch + p["pitch"],
                             range=base.range if p["range"] is None else p["range"], volume=p["volume"],
                             wordgap=p["wordgap"])


def plan_emotion(scale: float, seed: int) -> TaskPlan:
    rng = clip_rng(seed, "emotion", "plan")
    voices = _Voices(rng)
    per_speaker_emotion = _count(25, scale)  # 2 speakers x 4 emotions x 25 = 200 test clips per session
    clips, entries = [], []
    for session in range(1, 6):
        for gender in ("F", "M"):
            base = voices.new(gender.lower()).with_changes(range=50)
            speaker = f"Ses{session:02d}{gender}"
            index = 0
            for emotion in EMOTIONS:
                for _ in range(per_speaker_emotion):
                    dialog = f"{speaker}_impro{index % 2 + 1:02d}"
                    utt = f"{dialog}_{gender}{index:03d}"
                    rel = f"Session{session}/sentences/wav/{dialog}/{utt}.wav"
                    voice = _jitter(emotion_voice(base, emotion), rng, rate=0.06, pitch=4)
                    clips.append(Clip(path=f"IEMOCAP/{rel}", unit="emotion", text=sentence(rng), voice=voice,
                                      render=_EMOTION_VARIATION.draw(rng)))
                    entries.append((session, {"path": rel, "label": emotion, "speaker": speaker}))
                    index += 1

    def finalize(root: Path, lengths: dict[str, int]) -> None:
        labels = {emotion: i for i, emotion in enumerate(EMOTIONS)}
        for fold in range(1, 6):
            out = root / "IEMOCAP" / "meta_data" / f"Session{fold}"
            out.mkdir(parents=True, exist_ok=True)
            for name, keep in (("train", lambda s: s != fold), ("test", lambda s: s == fold)):
                meta = [entry for session, entry in entries if keep(session)]
                text = json.dumps({"labels": labels, "meta_data": meta}, indent=1)
                (out / f"{name}_meta_data.json").write_text(text + "\n")

    return TaskPlan("emotion", ("IEMOCAP",), clips, finalize)


# --------------------------------------------------------------------------------------------------------- asr
_ASR_UTTS = {"train-clean-100": 400, "dev-clean": 50, "test-clean": 100}
_ASR_UTTS_PER_CHAPTER = 5


def plan_asr(scale: float, seed: int) -> TaskPlan:
    rng = clip_rng(seed, "asr", "plan")
    voices = _Voices(rng)
    speaker_ids = iter(int(i) for i in rng.permutation(np.arange(10, 9000))[:1000])
    clips, transcripts = [], {}  # transcripts: chapter folder -> [(utt, TEXT)]
    for split in ASR_SPLITS:
        n_utts = _count(_ASR_UTTS[split], scale, minimum=2)
        for c in range(math.ceil(n_utts / _ASR_UTTS_PER_CHAPTER)):
            speaker, chapter = next(speaker_ids), int(rng.integers(1000, 200000))
            voice = voices.new()
            folder = f"{split}/{speaker}/{chapter}"
            lines = transcripts.setdefault(folder, [])
            for i in range(min(_ASR_UTTS_PER_CHAPTER, n_utts - c * _ASR_UTTS_PER_CHAPTER)):
                utt = f"{speaker}-{chapter}-{i:04d}"
                text = sentence(rng)
                clips.append(Clip(path=f"LibriSpeech/{folder}/{utt}.flac", unit="asr", text=text,
                                  voice=_jitter(voice, rng), render=_SENTENCE_VARIATION.draw(rng)))
                lines.append((utt, text.upper()))

    def finalize(root: Path, lengths: dict[str, int]) -> None:
        for folder, lines in transcripts.items():
            speaker, chapter = folder.split("/")[1:]
            text = "".join(f"{utt} {words}\n" for utt, words in sorted(lines))
            (root / "LibriSpeech" / folder / f"{speaker}-{chapter}.trans.txt").write_text(text)
        bucket = root / "len_for_bucket"
        bucket.mkdir(parents=True, exist_ok=True)
        for split in ASR_SPLITS:
            # file_path relative to the LibriSpeech root; length in samples; longest first; label left empty
            rows = sorted(((path[len("LibriSpeech/"):], n) for path, n in lengths.items()
                           if path.startswith(f"LibriSpeech/{split}/")), key=lambda row: (-row[1], row[0]))
            body = "".join(f"{i},{path},{n},\n" for i, (path, n) in enumerate(rows))
            (bucket / f"{split}.csv").write_text(",file_path,length,label\n" + body)

    return TaskPlan("asr", ("LibriSpeech", "len_for_bucket"), clips, finalize)


PLANNERS: dict[str, Callable[[float, int], TaskPlan]] = {
    "speech_commands": plan_speech_commands,
    "voxceleb1": plan_voxceleb1,
    "emotion": plan_emotion,
    "asr": plan_asr,
}
