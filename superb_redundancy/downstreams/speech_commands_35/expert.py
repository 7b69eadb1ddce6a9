"""``-d speech_commands_35``: 35-word keyword spotting on Speech Commands v0.02 (the paper's task).

A SUPERB-style utterance-level head on the (frozen, unless ``-f``) upstream's features: Linear(D -> projector_dim),
then s3prl's ``downstream.model`` head named by ``modelrc.select`` (``UtteranceLevel`` with ``MeanPooling`` and a
linear layer: the paper's Linear(D -> 256), mean over frames, Linear(256 -> 35)), cross-entropy, accuracy.

It logs exactly as s3prl's ``speech_commands`` expert does, so the same readers work: stdout ``{split} acc: X``,
``expdir/log.log`` lines ``{split} at step N: X`` (plus ``New best on dev ...``, which saves ``dev-best.ckpt``),
``expdir/{split}_predict.txt`` / ``{split}_truth.txt`` with ``<utterance id> <word>`` lines.

``datarc`` keys: ``speech_commands_root`` (the v0.02 root), ``speech_commands_test_root`` (optional: the v0.02 test
archive, the paper's 4,482-clip test set; unset = ``testing_list.txt``), ``batch_size``, ``num_workers``,
``clip_seconds`` (1.0), ``gain_db`` (0.0), ``balanced_sampling`` (True: class-balanced train sampler, as SUPERB).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
from torch.distributed import get_rank, get_world_size, is_initialized
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, DistributedSampler, Sampler, WeightedRandomSampler

from superb_redundancy.downstreams.speech_commands_35.dataset import CLASSES, SpeechCommands35Dataset, load_splits
from superb_redundancy.hub.downstreams import register_downstream

__all__ = ["DownstreamExpert", "NAME"]

NAME = "speech_commands_35"
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "test": "test"}


class _DistributedWeightedSampler(Sampler):
    """Class-balanced draws shared by all ranks (same generator seed), each rank taking every world-th one."""

    def __init__(self, weights, seed: int, epoch: int):
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.rank, self.world = get_rank(), get_world_size()
        self.seed, self.epoch = seed, epoch
        self.num_samples = math.ceil(len(self.weights) / self.world)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.num_samples * self.world, replacement=True, generator=generator)
        return iter(draws[self.rank::self.world].tolist())

    def __len__(self) -> int:
        return self.num_samples


@register_downstream(NAME, "KS-35: Speech Commands v0.02, 35 words, no silence class (the paper's task)")
class DownstreamExpert(nn.Module):
    """35-word keyword spotting on Speech Commands v0.02 (no _silence_, no _unknown_), 1 s clips."""

    def __init__(self, upstream_dim: int, downstream_expert: dict, expdir: str, **kwargs):
        super().__init__()
        from s3prl.downstream.model import get_downstream_model  # after the compat layer (registry.install)

        self.upstream_dim = upstream_dim
        self.datarc = dict(downstream_expert["datarc"])
        self.modelrc = dict(downstream_expert["modelrc"])
        self.expdir = Path(expdir)
        self.seed = int(kwargs.get("seed", 1337))

        splits = load_splits(self.datarc["speech_commands_root"], self.datarc.get("speech_commands_test_root"))
        audio = {"clip_seconds": float(self.datarc.get("clip_seconds", 1.0)),
                 "gain_db": float(self.datarc.get("gain_db", 0.0))}
        self.datasets = {split: SpeechCommands35Dataset(items, **audio) for split, items in splits.items()}
        if len(self.datasets["train"]) == 0:
            raise ValueError(f"{self.datarc['speech_commands_root']}: the train split is empty")

        self.projector = nn.Linear(upstream_dim, self.modelrc["projector_dim"])
        self.model = get_downstream_model(self.modelrc["projector_dim"], len(CLASSES), self.modelrc)
        self.objective = nn.CrossEntropyLoss()
        self.register_buffer("best_score", torch.zeros(1))

    # ------------------------------------------------------------------------------------------------ data
    def _loader(self, dataset: SpeechCommands35Dataset, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(dataset, sampler=sampler, shuffle=False, batch_size=self.datarc["batch_size"],
                          drop_last=drop_last, num_workers=self.datarc.get("num_workers", 0),
                          collate_fn=dataset.collate_fn)

    def get_dataloader(self, mode: str, epoch: int = 0) -> DataLoader:
        split = _SPLIT_ALIASES.get(mode)
        if split is None:
            raise ValueError(f"{NAME}: no {mode!r} split; valid: train, dev, test")
        dataset = self.datasets[split]
        if len(dataset) == 0:
            raise ValueError(f"{NAME}: the {split} split is empty (check the lists / the data root)")
        if split != "train":
            return self._loader(dataset)  # in order, every clip once
        balanced = bool(self.datarc.get("balanced_sampling", True))
        if is_initialized():
            if balanced:
                sampler = _DistributedWeightedSampler(dataset.sample_weights, self.seed, epoch)
            else:
                sampler = DistributedSampler(dataset, shuffle=True, seed=self.seed)
                sampler.set_epoch(epoch)
        elif balanced:
            sampler = WeightedRandomSampler(dataset.sample_weights, len(dataset))
        else:
            sampler = torch.utils.data.RandomSampler(dataset)
        return self._loader(dataset, sampler, drop_last=True)

    def load_audio(self, path) -> torch.Tensor:
        """For the runner's ``-m inference -t FILE``: the clip as the datasets present it."""
        return torch.from_numpy(self.datasets["test"].load(path))

    # --------------------------------------------------------------------------------------------- model
    def _logits(self, features) -> torch.Tensor:
        device = features[0].device
        lengths = torch.LongTensor([len(feature) for feature in features]).to(device)
        hidden = self.projector(pad_sequence(features, batch_first=True))
        logits, _ = self.model(hidden, lengths)
        return logits

    def forward(self, mode, features, labels, filenames, records, **kwargs):
        logits = self._logits(features)
        labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
        loss = self.objective(logits, labels)

        predicted = logits.argmax(dim=-1)
        records["loss"].append(loss.item())
        records["acc"] += (predicted == labels).cpu().float().tolist()
        records["filename"] += list(filenames)
        records["predict"] += [CLASSES[i] for i in predicted.cpu().tolist()]
        records["truth"] += [CLASSES[i] for i in labels.cpu().tolist()]
        return loss

    def inference(self, features, filenames):
        predicted = self._logits(features).argmax(dim=-1).cpu().tolist()
        for filename, index in zip(filenames, predicted):
            print(f"{filename} {CLASSES[index]}")

    # --------------------------------------------------------------------------------------------- logs
    def log_records(self, mode, records, logger, global_step, **kwargs):
        save_names = []
        averages = {key: sum(records[key]) / len(records[key]) for key in ("loss", "acc")}
        for key, average in averages.items():
            logger.add_scalar(f"{NAME}/{mode}-{key}", average, global_step=global_step)
        accuracy = averages["acc"]
        print(f"{mode} acc: {accuracy}")
        with open(self.expdir / "log.log", "a") as log:
            log.write(f"{mode} at step {global_step}: {accuracy}\n")
            if mode == "dev" and accuracy > self.best_score.item():
                self.best_score.fill_(accuracy)
                log.write(f"New best on {mode} at step {global_step}: {accuracy}\n")
                save_names.append(f"{mode}-best.ckpt")

        for kind in ("predict", "truth"):
            with open(self.expdir / f"{mode}_{kind}.txt", "w") as file:
                file.writelines(f"{name} {word}\n" for name, word in zip(records["filename"], records[kind]))
        return save_names
