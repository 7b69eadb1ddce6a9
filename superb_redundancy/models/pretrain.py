"""Self-supervised pretraining of a small wav2vec 2.0 on a folder of audio (the synthetic corpus' training splits).

The paper's models were pretrained self-supervised, then fine-tuned; a randomly initialised tiny model is not.
:func:`pretrain` trains s3prl's own port of fairseq's ``Wav2Vec2Model`` with wav2vec 2.0's objective, as fairseq's
``wav2vec`` criterion computes it from that model:

* ``net_output = model(source, mask=True, features_only=False)``; the contrastive (InfoNCE) term is the
  cross-entropy of ``model.get_logits(net_output)`` against class 0 (the true quantized target among
  ``num_negatives`` distractors from the same clip), averaged over the masked frames;
* plus ``model.get_extra_losses(net_output)`` weighted as fairseq's ``loss_weights [0.1, 10]``: the codebook
  diversity term ``(num_vars - prob_perplexity) / num_vars`` (0.1) and the feature penalty (10);
* fairseq masks logits whose negative equals the positive (``neg_is_pos``, possible with a small codebook); s3prl's
  port computes the mask but drops it, so the model used here gets fairseq's ``compute_preds`` back (on the
  instance: the saved checkpoint is the stock format, loaded by s3prl's ``wav2vec2_local`` as is);
* the Gumbel temperature decays per update (``quantizer.set_num_updates``) from 2 to 0.5, reaching 0.5 at 70% of
  the run (fairseq's Base reaches its floor at about the same point); Adam (0.9, 0.98, eps 1e-6, decoupled weight
  decay 0.01), linear warm-up then linear decay to 0 (fairseq's ``polynomial_decay``), gradient-norm clipping.

The model (defaults): 8 transformer layers of width 128 (FFN 512, 4 heads), Base's 7-layer CNN of width 64 (total
stride 320), a Gumbel quantizer of 2 groups x 8 entries, built by :mod:`superb_redundancy.models.tiny`. The
transformer is pre-LN (Large's ``layer_norm_first``): on the synthetic corpus an 8-layer post-LN stack (Base's)
stayed at chance, its predictions at masked frames all alike, for 1500+ updates at every learning rate tried,
while the pre-LN one leaves that plateau within a few hundred (``--post-ln`` gives Base's layout). A small
codebook, a short positional convolution and a learning rate of 5e-3 also shorten the plateau; the training
record shows where it ends (``accuracy`` leaving ~0.08).

Data: clips are cropped as fairseq's audio dataset does without padding: every clip of a batch to one length, the
shorter of a seeded random length in ``[crop_min, crop_max]`` seconds and the shortest clip of the batch, each at a
seeded random offset; clips shorter than ``crop_min`` are left out. ``--corpus ROOT`` takes the training splits of
a corpus laid out as ours (keyword spotting's training root minus its validation/testing lists and background
noise, VoxCeleb1's identification split 1, IEMOCAP sessions 2-5, LibriSpeech ``train-*``); ``--data DIR ...``
takes every clip of the folders.

Reproducibility: python, numpy and torch are seeded (the model's masks use numpy's global generator, its negatives,
Gumbel noise and dropout torch's; the data order and crops a separate seeded generator), torch runs deterministic
algorithms with the given thread count, so a rerun with the same settings on the same machine gives the same
losses and the same checkpoint bytes. The checkpoint is s3prl's stock wav2vec2 format (``task_cfg``,
``model_cfg``, ``model_weight``) plus a ``superb_redundancy`` entry: the training record without its wall-clock
parts (so that the bytes depend on the settings and data alone). ``<checkpoint>.train.json`` holds the whole
record (every step's loss, contrastive accuracy, diversity, learning rate, ...; command, seeds, data hash,
versions, wall time), written atomically.

The code is in :mod:`superb_redundancy.models.pretraining`, one concept per module; this module names the public
parts. Light at import: the settings are imported now (``superb-redundancy pretrain``'s parser reads their
defaults without torch), everything else on first use (:func:`__getattr__`).
"""

from __future__ import annotations

import importlib

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.models.pretraining.settings import TEMPERATURE_FLOOR_AT  # noqa: F401 (re-exported)
from superb_redundancy.models.pretraining.settings import PretrainError, PretrainSettings

__all__ = ["PretrainSettings", "PretrainError", "PretrainResult", "TrainingAudio", "pretrain", "build_model",
           "training_audio", "corpus_training_audio", "settings_from_record", "load_record", "loss_terms",
           "evaluate", "model_config", "RECORD_KEY", "RECORD_FORMAT", "SAMPLE_RATE"]

#: public name -> the module of superb_redundancy.models.pretraining that defines it (imported on first use)
_LAZY = {
    **dict.fromkeys(["TrainingAudio", "corpus_training_audio", "training_audio", "iter_batches"], "audio"),
    **dict.fromkeys(["model_config", "initial_checkpoint", "build_model", "loss_terms", "evaluate",
                     "torch_rng_forked", "DIVERSITY_WEIGHT", "FEATURE_PENALTY_WEIGHT"], "objective"),
    **dict.fromkeys(["RECORD_KEY", "RECORD_FORMAT", "LOG_COLUMNS", "PretrainResult", "command_line",
                     "format_record", "settings_from_record", "load_record", "record_path"], "record"),
    "pretrain": "train",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"superb_redundancy.models.pretraining.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
