"""What a study costs before its first run: per run, device hours, peak device memory, host memory and disk.

``superb-redundancy study status FILE --estimate`` prints it, offline. Each run is priced from what decides its
work: the upstream's multiply-accumulates per second of audio (:mod:`superb_redundancy.compute.analytic`, from its
shape: no download), the steps, batch sizes and evaluation rounds of its downstream config, the epochs and widths
of a mimicker, and the clips and durations of the splits it reads: counted on disk where the corpus is there
(durations from a seeded sample of clips), else those of the released corpora (:data:`RELEASED`). Device time is
MACs over a :class:`Throughput`: an assumed one (stated, :data:`ASSUMED`) or one measured on the machine at hand
(:func:`calibrate`: real steps of a real-size model with random weights). Memory and disk follow from parameter,
activation and cache sizes in float32 (float16 for the teacher cache). It is an estimate: the rehearsal
(``scripts/rehearse_paper.sh``) measures real-size runs beside it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from superb_redundancy.compute.analytic import Shape
from superb_redundancy.data.tasks import load_config
from superb_redundancy.study.config import StudyConfig, audio_task
from superb_redundancy.study.plan import Run, expand
from superb_redundancy.study.upstream_plan import Step2Plan
from superb_redundancy.study.upstream_plan import UpstreamPlan, mimic_entry
from superb_redundancy.core.errors import UserError

__all__ = ["Throughput", "ASSUMED", "Split", "RELEASED", "RunCost", "estimate", "summarize", "calibrate"]

GB = 1024 ** 3
#: bytes a process holds besides the model: the interpreter, torch, s3prl, a CUDA context (host / device)
PROCESS_HOST_GB, PROCESS_DEVICE_GB = 2.5, 0.6
#: what a run pays before and after its compute: starting a process with torch and s3prl (seconds), and reading and
#: writing checkpoints (bytes per second); the CPU rehearsal measured about this (docs/studies.md, "The paper study")
STARTUP_SECONDS, IO_BYTES_PER_SECOND = 15.0, 0.3e9
#: the run kinds that load their upstream, and how many float32 copies of it they read and write (the fine-tune
#: reads the base, writes its states with Adam's two moments twice over and the exported base)
_STARTS_A_MODEL = {"finetune": 1 + 2 * 3 + 1, "downstream": 1, "similarity": 2, "teacher": 2, "curves": 1,
                   "heal": 1 + 3}


@dataclass(frozen=True)
class Throughput:
    """What the estimate assumes a device does per second."""

    device: str
    #: multiply-accumulates per second of a forward pass of a speech transformer (float32), all included
    forward_macs_per_second: float
    #: a training step (forward, backward, optimizer) in forward passes
    training_factor: float = 3.0
    #: bytes per second step 1 reads from the teacher cache (host memory-mapped files)
    cache_bytes_per_second: float = 2e9
    measured: bool = False

    def describe(self) -> str:
        how = "measured here" if self.measured else "assumed; measure yours with --calibrate"
        return (f"{self.device}: {self.forward_macs_per_second / 1e12:.2f} TMAC/s forward, a training step "
                f"{self.training_factor:.1f} forward passes, {self.cache_bytes_per_second / 1e9:.1f} GB/s cache reads "
                f"({how})")


#: an A100-class GPU computing float32 (PyTorch leaves TF32 matmuls off): ~19.5 TFLOP/s peak, half of it effective
ASSUMED = Throughput("one A100-class GPU, float32", 5e12)


@dataclass(frozen=True)
class Split:
    clips: int
    seconds: float  # mean clip duration


#: the released corpora, split as the tasks read them (used where the corpus is not on this machine): Speech Commands
#: v0.02 (Hugging Face's splits; the paper's test set 4,482), v0.01 as s3prl splits it, VoxCeleb1 identification
#: (iden_split.txt; s3prl crops training clips to 8 s), IEMOCAP's 4 classes (fold 1), LibriSpeech (100 h / 5.4 h)
RELEASED: dict[str, dict[str, Split]] = {
    "speech_commands_35": {"train": Split(84843, 0.98), "dev": Split(9981, 0.98), "test": Split(4482, 0.98)},
    "speech_commands": {"train": Split(51094, 0.98), "dev": Split(6798, 0.98), "test": Split(3081, 0.98)},
    "voxceleb1": {"train": Split(138361, 8.2), "dev": Split(6904, 8.2), "test": Split(8251, 8.2)},
    "emotion": {"train": Split(4290, 4.5), "dev": Split(1073, 4.5), "test": Split(1085, 4.5)},
    "asr": {"train": Split(28539, 12.7), "dev": Split(2703, 7.2), "test": Split(2620, 7.4)},
}
#: s3prl's VoxCeleb1 training crop (max_timestep 128000 samples)
_SID_CROP_SECONDS = 8.0
#: the hub names of the studied models, by the architecture whose shape they have
HUB_ARCHITECTURES = {
    "wav2vec2": "wav2vec2_base", "wav2vec2_base_960": "wav2vec2_base", "wav2vec2_large_960": "wav2vec2_large",
    "wav2vec2_large_ll60k": "wav2vec2_large", "wav2vec2_large_lv60_cv_swbd_fsh": "wav2vec2_large",
    "hubert": "hubert_base", "hubert_base": "hubert_base", "hubert_large_ll60k": "hubert_large",
    "wavlm": "wavlm_base_plus", "wavlm_base": "wavlm_base", "wavlm_base_plus": "wavlm_base", "wavlm_large": "wavlm_large",
}


@dataclass(frozen=True)
class RunCost:
    run_id: str
    kind: str
    device_hours: float  # on the study's device (0: a CPU run of seconds)
    device_gb: float  # peak device memory
    host_gb: float  # peak host memory
    disk_gb: float  # what it leaves on disk
    note: str = ""


# ---------------------------------------------------------------------------------------------- inputs
def upstream_shape(up: UpstreamPlan) -> Shape:
    """The base model's shape without downloading it: a local checkpoint's config, or the architecture of a hub
    name (:data:`HUB_ARCHITECTURES`)."""
    import torch

    from superb_redundancy.models.architectures import get_architecture
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.families import get_family
    from superb_redundancy.models.shipped import is_shipped, shipped_checkpoint

    if up.base == "tiny":
        return Shape.from_config(ModelConfig().encoder(), up.family)
    path = shipped_checkpoint(up.base) if is_shipped(up.base) else Path(up.base).expanduser()
    if path.is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return Shape.from_config(get_family(up.family).config(checkpoint), up.family)
    if up.base in HUB_ARCHITECTURES:
        architecture = get_architecture(HUB_ARCHITECTURES[up.base])
        return Shape.from_config(architecture.config.encoder(), architecture.family)
    raise UserError(f"upstreams[{up.name}].base: cannot tell the shape of {up.base!r} offline; known hub names: "
                     f"{sorted(HUB_ARCHITECTURES)}, or give a checkpoint path")


def split_sizes(study: StudyConfig, task: str) -> dict[str, Split]:
    """The clips and mean duration of each split of a task's corpus: counted on disk when it is there (durations
    from up to 200 clips, seeded), else the released corpus's (:data:`RELEASED`)."""
    import soundfile

    from superb_redundancy.data.splits import SPLITS, SplitError, corpus_audio

    datarc = study.data.get(task)
    root = None if datarc else Path(study.workdir) / "data"
    sizes = {}
    for split in SPLITS:
        try:
            files = corpus_audio(root, task, split, datarc=datarc)
        except SplitError:
            sizes[split] = RELEASED[task].get(split, RELEASED[task]["train"])
            continue
        sample = random.Random(0).sample(files, min(200, len(files))) if files else []
        seconds = [soundfile.info(str(p)).duration for p in sample]
        sizes[split] = Split(len(files), sum(seconds) / len(seconds) if seconds else 0.0)
    return sizes


def _batches(config: dict) -> tuple[int, int]:
    """(clips per forward batch, batches per optimizer step) of a downstream config."""
    datarc = config["downstream_expert"]["datarc"]
    batch = datarc.get("batch_size") or datarc.get("train_batch_size") or 1
    return int(batch), int(config["runner"].get("gradient_accumulate_steps", 1))


# ---------------------------------------------------------------------------------------------- model sizes
def _parameters(shape: Shape) -> int:
    d, f = shape.dim, shape.ffn_dim
    layer = 4 * d * d + 4 * d + 2 * d * f + d + f + 4 * d
    return shape.layers * layer + _frontend_params(shape) + d * (d // shape.conv_pos_groups) * shape.conv_pos


def _activations_gb(shape: Shape, clips: int, seconds: float, layers: int, training: bool) -> float:
    """Activation memory of a batch in float32: per layer and frame the hidden state, and in training also what
    backward keeps (attention projections, the feed-forward hidden layer, attention weights per head); the front
    end's first convolution (a fifth of the samples, ``conv_dim`` channels) is its largest output."""
    samples = int(seconds * 16000)
    frames = shape.frames(samples) + 1
    per_frame = shape.dim + (6 * shape.dim + shape.ffn_dim + 2 * shape.heads * frames if training else 0)
    cnn = clips * samples // 5 * shape.conv[0][0] * (2 if training else 1)
    return (clips * frames * layers * per_frame + cnn) * 4 / GB


def _forward_macs(shape: Shape, seconds: float, layers: Optional[int] = None) -> float:
    """MACs of one clip of ``seconds`` through the front end and ``layers`` transformer layers (default all)."""
    parts = shape.macs(max(1, int(round(seconds * 16000))))
    stack = parts["stack"] * (shape.layers if layers is None else layers) / shape.layers
    return parts["total"] - parts["stack"] + stack


def _frontend_params(shape: Shape) -> int:
    """The CNN and the projection to the model width (what a mimic artifact keeps of the teacher)."""
    channels, cnn = 1, 0
    for out, kernel, _ in shape.conv:
        cnn += out * channels * kernel
        channels = out
    return cnn + channels * shape.dim


def _mimicker_macs_per_frame(config, d: int, frames: int) -> float:
    z, n = config.z, config.n_layers
    if config.kind == "linear":
        return n * 2 * d * z
    return n * (4 * d * d + 2 * d * z + 2 * frames * d)


# ---------------------------------------------------------------------------------------------- per run
class _Pricer:
    """Prices the runs of one study (split sizes and shapes looked up once)."""

    def __init__(self, study: StudyConfig, throughput: Throughput, runs: list[Run]):
        self.study, self.t = study, throughput
        self._runs = {run.run_id: run for run in runs}
        self._sizes: dict[str, dict[str, Split]] = {}
        self._shapes: dict[str, Shape] = {}

    def sizes(self, task: str) -> dict[str, Split]:
        if task not in self._sizes:
            self._sizes[task] = split_sizes(self.study, task)
        return self._sizes[task]

    def shape(self, name: str) -> Shape:
        if name not in self._shapes:
            self._shapes[name] = upstream_shape(next(u for u in self.study.upstreams if u.name == name))
        return self._shapes[name]

    def hours(self, macs: float, training: bool = False) -> float:
        return macs * (self.t.training_factor if training else 1.0) / self.t.forward_macs_per_second / 3600

    def price(self, run: Run) -> RunCost:
        cost = getattr(self, f"_{run.kind}")(run)
        if run.kind in _STARTS_A_MODEL:  # start-up: the interpreter and imports, the model read (and written)
            params = _parameters(self.shape(run.params["upstream"]))
            moved = params * 4 * _STARTS_A_MODEL[run.kind]
            startup = (STARTUP_SECONDS + moved / IO_BYTES_PER_SECOND) / 3600
            cost = replace(cost, device_hours=cost.device_hours + startup)
        return cost

    def _cpu(self, run: Run, note: str) -> RunCost:
        return RunCost(run.run_id, run.kind, 0.0, 0.0, PROCESS_HOST_GB, 0.0, note)

    def _data(self, run: Run) -> RunCost:
        return self._cpu(run, "tiny models (and the synthetic corpus), on the CPU")

    def _prune(self, run: Run) -> RunCost:
        return self._cpu(run, "a prune spec from the similarity report, on the CPU")

    def _up(self, run: Run) -> UpstreamPlan:
        return next(u for u in self.study.upstreams if u.name == run.params["upstream"])

    def _finetune(self, run: Run) -> RunCost:
        shape = self.shape(run.params["upstream"])
        task, steps = run.params["task"], int(run.params["steps"])
        config = load_config(task, run.params["setting"])
        batch, accumulate = _batches(config)
        sizes = self.sizes(task)
        train = steps * batch * accumulate * _forward_macs(shape, sizes["train"].seconds)
        evals = steps // int(config["runner"]["eval_step"]) * sizes["dev"].clips * _forward_macs(shape, sizes["dev"].seconds)
        params = _parameters(shape)
        device = params * 16 / GB + _activations_gb(shape, batch, sizes["train"].seconds, shape.layers, True)
        disk = params * 12 / GB * 2  # the last states (weights + Adam) and dev-best, then the exported base
        return RunCost(run.run_id, run.kind, self.hours(train, True) + self.hours(evals), device + PROCESS_DEVICE_GB,
                       PROCESS_HOST_GB + params * 4 / GB, disk + params * 4 / GB,
                       f"{steps} steps x {batch * accumulate} clips, the whole model trained")

    def _similarity(self, run: Run) -> RunCost:
        up, shape = self._up(run), self.shape(run.params["upstream"])
        dev = self.sizes(audio_task(self.study, up))["dev"]
        clips = min(run.params.get("limit") or dev.clips, dev.clips)
        seconds = run.params.get("clip_seconds") or dev.seconds
        macs = 2 * clips * _forward_macs(shape, seconds)  # the model and its random-init twin
        frames = shape.frames(int(seconds * 16000))
        per_sample = shape.dim * (frames if run.params.get("pool") == "flatten" else 1)
        batch = int(run.params.get("batch_size") or 128)
        host = (shape.layers + 1) * batch * per_sample * 4 * 3 / GB  # a batch of pooled states, centred, and Grams
        # the model and its random-init twin are both held
        device = 2 * _parameters(shape) * 4 / GB + _activations_gb(shape, int(run.params.get("forward_batch_size") or 8),
                                                                  seconds, shape.layers + 1, False)
        return RunCost(run.run_id, run.kind, self.hours(macs), device + PROCESS_DEVICE_GB, PROCESS_HOST_GB + host, 0.01,
                       f"{clips} dev clips, twice (model and random init)")

    def _curves(self, run: Run) -> RunCost:
        shape = self.shape(run.params["upstream"])
        test = self.sizes(run.params["task"])["test"]
        # the front end once; per objective at most L(L+1)/2 layer passes (shared prefixes make it fewer)
        front = test.clips * _forward_macs(shape, test.seconds, layers=0)
        layer = test.clips * (_forward_macs(shape, test.seconds, layers=1) - _forward_macs(shape, test.seconds, 0))
        objectives = len(run.params["objectives"])
        macs = front + objectives * layer * shape.layers * (shape.layers + 1) / 2
        device = _parameters(shape) * 4 / GB + _activations_gb(shape, 32, test.seconds, shape.layers + 1, False)
        return RunCost(run.run_id, run.kind, self.hours(macs), device + PROCESS_DEVICE_GB, PROCESS_HOST_GB, 0.01,
                       f"{test.clips} test clips, {objectives} objectives x {shape.layers} amounts (an upper bound)")

    def _cached_layers(self, run: Run, shape: Shape) -> int:
        """Layer outputs the teacher run stores: the last, a span's input and output, and for two-layer mimickers
        the end of the first similarity block (one more layer: which one, the similarity run tells)."""
        if run.params.get("heal_targets") == "mapped":
            return shape.layers
        layers: set = {shape.layers - 1}
        for entry in run.params["configs"]:
            config, _ = mimic_entry(entry)
            if config.span is not None:
                layers |= {config.span[0] - 1, config.span[1]} - {-1}
            elif config.n_layers >= 2:
                layers.add("end of the first block")
        return len(layers)

    def _teacher(self, run: Run) -> RunCost:
        up, shape = self._up(run), self.shape(run.params["upstream"])
        train = self.sizes(audio_task(self.study, up))["train"]
        macs = train.clips * _forward_macs(shape, train.seconds)
        frames = train.clips * shape.frames(int(train.seconds * 16000))
        disk = frames * shape.dim * 2 * (1 + self._cached_layers(run, shape)) / GB  # float16
        device = _parameters(shape) * 4 / GB + _activations_gb(shape, 83, train.seconds, shape.layers + 1, False)
        host = PROCESS_HOST_GB + _parameters(shape) * 4 / GB  # the checkpoint, read to build the teacher
        return RunCost(run.run_id, run.kind, self.hours(macs), device + PROCESS_DEVICE_GB, host, disk,
                       f"{train.clips} training clips, once, cached in float16")

    def _mimic(self, run: Run) -> RunCost:
        up, shape = self._up(run), self.shape(run.params["upstream"])
        config, step1 = mimic_entry(run.params["config"])
        if not step1:
            return self._cpu(run, "initialised only (trained in step 2)")
        train = self.sizes(audio_task(self.study, up))["train"]
        frames_per_clip = shape.frames(int(train.seconds * 16000))
        frames = train.clips * frames_per_clip
        compute = config.epochs * frames * _mimicker_macs_per_frame(config, shape.dim, frames_per_clip)
        targets = max(1, config.n_layers)
        read = config.epochs * frames * shape.dim * 2 * (1 + targets) / self.t.cache_bytes_per_second / 3600
        hours = max(self.hours(compute, True), read)
        batch = config.batch_size * frames_per_clip * shape.dim * 4 * (1 + targets) / GB
        device = batch * 3 + (config.z * shape.dim * 2 * config.n_layers * 16) / GB
        note = f"{config.epochs} epochs of {train.clips} clips; " + ("cache reads" if read > self.hours(compute, True)
                                                                    else "compute") + " bound"
        # the artifact (the mimicker and the teacher's front end) and the resume state (weights, Adam's two
        # moments, the best weights)
        from superb_redundancy.mimic.modules import mimicker_parameter_count

        size = mimicker_parameter_count(config.kind, config.n_layers, shape.dim, config.z)
        disk = (size * 5 + _frontend_params(shape)) * 4 / GB
        return RunCost(run.run_id, run.kind, hours, device + PROCESS_DEVICE_GB, PROCESS_HOST_GB + batch * 4, disk, note)

    def _heal(self, run: Run) -> RunCost:
        up, shape = self._up(run), self.shape(run.params["upstream"])
        train = self.sizes(audio_task(self.study, up))["train"]
        epochs, batch = int(run.params["config"]["epochs"]), int(run.params["config"]["batch_size"])
        macs = epochs * train.clips * _forward_macs(shape, train.seconds)  # at most the whole stack trains
        device = _parameters(shape) * 16 / GB + _activations_gb(shape, batch, train.seconds, shape.layers, True)
        return RunCost(run.run_id, run.kind, self.hours(macs, True), device + PROCESS_DEVICE_GB, PROCESS_HOST_GB,
                       _parameters(shape) * 4 / GB, f"{epochs} epochs of {train.clips} clips, from the teacher cache")

    def _variant_macs(self, run: Run, shape: Shape, seconds: float) -> tuple[float, float, str]:
        """(forward MACs of the variant's upstream, of which trained in step 2, what it is)."""
        variant = run.params["variant"]
        if variant["kind"] == "mimic":
            up = self._up(run)
            entry = next(c for c in up.mimic if variant["label"].endswith(f"-{_label(c)}"))
            config, step1 = mimic_entry(entry)
            frames = shape.frames(int(seconds * 16000))
            mimicker = frames * _mimicker_macs_per_frame(config, shape.dim, frames) if config.n_layers else 0.0
            return _forward_macs(shape, seconds, 0) + mimicker, 0.0 if step1 else mimicker, "mimicker"
        if variant["kind"] in ("pruned", "healed"):
            kept = shape.layers - self._dropped(run, shape)
            return _forward_macs(shape, seconds, kept), 0.0, f"{kept} of {shape.layers} layers"
        return _forward_macs(shape, seconds), 0.0, "the base"

    def _dropped(self, run: Run, shape: Shape) -> int:
        """Layers a pruned variant drops: its amount, or a quarter of them for an amount read off the curves."""
        variant = run.params["variant"]
        prune_run = variant.get("prune_run") or variant["heal_run"].replace("heal/", "prune/", 1)
        amount = self._runs[prune_run].params["amount"]
        if isinstance(amount, str):
            return shape.layers // 4
        return int(amount) if isinstance(amount, int) else int(math.floor(amount * shape.layers))

    def _downstream(self, run: Run) -> RunCost:
        shape, task = self.shape(run.params["upstream"]), run.params["task"]
        config = load_config(task, self.study.setting)
        step2 = run.params["variant"].get("step2")
        if step2 and step2["kind"] == "paper":  # early stopping: priced at its cap
            found = Step2Plan(**step2).runner_overrides(config["runner"])
            config = {**config, "runner": {**config["runner"], **{k.split(".")[-1]: v for k, v in found.items()}}}
        batch, accumulate = _batches(config)
        sizes = self.sizes(task)
        seconds = min(sizes["train"].seconds, _SID_CROP_SECONDS) if task == "voxceleb1" else sizes["train"].seconds
        steps = int(config["runner"]["total_steps"])
        forward, trained, what = self._variant_macs(run, shape, seconds)
        head = _head_macs(config, shape.dim, shape.frames(int(seconds * 16000)))
        clips = steps * batch * accumulate
        train = self.hours(clips * (forward - trained)) + self.hours(clips * (trained + head), True)
        evals = steps // int(config["runner"]["eval_step"]) * sizes["dev"].clips + sizes["test"].clips
        evaluation = self.hours(evals * (forward + head))
        params = _parameters(shape)
        device = params * 4 / GB + _activations_gb(shape, batch, seconds, shape.layers + 1, False) + \
            _head_params(config, shape.dim) * 16 / GB
        disk = _head_params(config, shape.dim) * 12 * 2 / GB
        return RunCost(run.run_id, run.kind, train + evaluation, device + PROCESS_DEVICE_GB, PROCESS_HOST_GB, disk,
                       f"{steps} steps x {batch * accumulate} clips on {what}")


def _label(entry: dict) -> str:
    from superb_redundancy.study.upstream_plan import mimic_label

    return mimic_label(entry)


def _head_macs(config: dict, d: int, frames: int) -> float:
    """MACs per clip of a downstream head: the ASR head's BiLSTMs; the utterance-level heads' projector."""
    model = config["downstream_expert"].get("modelrc", {})
    if "RNNs" in model:
        rnn = model["RNNs"]
        dims, bidirectional = list(rnn.get("dim", [1024])), bool(rnn.get("bidirection", True))
        width, macs = model.get("project_dim", d), 0.0
        for hidden in dims:
            macs += (2 if bidirectional else 1) * 4 * (width + hidden) * hidden
            width = hidden * (2 if bidirectional else 1)
        return frames * (macs + d * model.get("project_dim", d))
    return frames * d * int(model.get("projector_dim", 256))


def _head_params(config: dict, d: int) -> float:
    model = config["downstream_expert"].get("modelrc", {})
    if "RNNs" in model:
        rnn = model["RNNs"]
        width, params = model.get("project_dim", d), d * model.get("project_dim", d)
        for hidden in rnn.get("dim", [1024]):
            params += 2 * 4 * (width + hidden) * hidden
            width = 2 * hidden
        return params
    return d * int(model.get("projector_dim", 256)) * 2


# ---------------------------------------------------------------------------------------------- the study
def estimate(study: StudyConfig, throughput: Throughput = ASSUMED) -> list[RunCost]:
    """Every run of the study priced (:class:`RunCost`), in the study's order. Raises ValueError naming a base whose
    shape cannot be told offline."""
    runs = expand(study)
    pricer = _Pricer(study, throughput, runs)
    costs = [pricer.price(run) for run in runs]
    if study.device == "cpu":  # device time is host time, and device memory host memory
        costs = [_on_cpu(c) for c in costs]
    return costs


#: the run kinds whose compute runs in a child process (s3prl's runner), beside what their own process holds
_IN_A_CHILD = ("finetune", "downstream")


def _on_cpu(cost: RunCost) -> RunCost:
    """A run's cost where the device is the CPU: what the device held is host memory, in the run's own process or,
    for s3prl's runner, in its child."""
    model = max(0.0, cost.device_gb - PROCESS_DEVICE_GB)
    host = max(cost.host_gb, PROCESS_HOST_GB + model) if cost.kind in _IN_A_CHILD else cost.host_gb + model
    return replace(cost, host_gb=host, device_gb=0.0)


def summarize(costs: list[RunCost]) -> list[dict]:
    """One row per run kind (runs, device hours, the largest peak device and host memory, disk) and a total row."""
    rows = []
    for kind in dict.fromkeys(c.kind for c in costs):
        these = [c for c in costs if c.kind == kind]
        rows.append({"kind": kind, "runs": len(these), "device_hours": sum(c.device_hours for c in these),
                     "device_gb": max(c.device_gb for c in these), "host_gb": max(c.host_gb for c in these),
                     "disk_gb": sum(c.disk_gb for c in these)})
    rows.append({"kind": "total", "runs": len(costs), "device_hours": sum(c.device_hours for c in costs),
                 "device_gb": max((c.device_gb for c in costs), default=0.0),
                 "host_gb": max((c.host_gb for c in costs), default=0.0), "disk_gb": sum(c.disk_gb for c in costs)})
    return rows


def calibrate(device: str, seconds: float = 1.0, batch: int = 8, steps: int = 3) -> Throughput:
    """The throughput of ``device``, measured: forward passes and training steps of wav2vec2 Base's shape (random
    weights, real size) on a batch of ``batch`` clips of ``seconds``, after one warm-up of each."""
    import time

    import torch

    import tempfile

    from superb_redundancy.compute.inputs import check_device
    from superb_redundancy.hub.install import build_upstream
    from superb_redundancy.models.architectures import get_architecture, write_architecture_checkpoint

    dev = check_device(device)
    with tempfile.TemporaryDirectory(prefix="superb_redundancy_calibrate_") as tmp:
        path = write_architecture_checkpoint("wav2vec2_base", Path(tmp) / "base.pt")
        model = build_upstream("wav2vec2_local", str(path)).to(dev)
    shape = Shape.from_config(get_architecture("wav2vec2_base").config.encoder())
    wavs = [torch.randn(int(seconds * 16000), device=dev) for _ in range(batch)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def forward():
        with torch.no_grad():
            model(wavs)

    def train():
        loss = sum(h.float().pow(2).mean() for h in model(wavs)["hidden_states"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    timings = {}
    for name, step in (("forward", forward), ("train", train)):
        model.train(name == "train")
        step()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        timings[name] = (time.perf_counter() - start) / steps
    macs = batch * _forward_macs(shape, seconds)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"this machine's CPU ({torch.get_num_threads()} threads)"
    return Throughput(name, macs / timings["forward"], timings["train"] / timings["forward"],
                      ASSUMED.cache_bytes_per_second, measured=True)
