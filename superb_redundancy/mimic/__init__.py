"""Mimicking networks (paper section 2.3): the transformer stack replaced by 1-2 small layers that mimic it.

The deployed model keeps the teacher's front end, i.e. the CNN feature extractor followed by ``layer_norm`` and
``post_extract_proj`` (the "feature projection"), and replaces everything after it (positional convolution,
encoder LayerNorm, all transformer layers) by a :class:`Mimicker` of N mimicking layers:

* ``"linear"``: Linear(d->z), LayerNorm(z), ReLU, Linear(z->d), applied per frame. A multi-layer linear mimicker
  shares ONE LayerNorm(z) between its layers (the authors' code; the paper's parameter counts confirm it).
* ``"transformer"``: ``nn.TransformerEncoderLayer(d_model=d, nhead=8, dim_feedforward=z, batch_first=True)``
  with PyTorch's other defaults (dropout 0.1, ReLU, post-LN), attending over frames with a key padding mask.

What each layer mimics (step 1, task-agnostic distillation, trained by :mod:`superb_redundancy.mimic.train`):
a 1-layer mimicker mimics the output of the final transformer layer; a 2-layer one has m_f mimic the output of
layer i ("the last layer of the first block" of the similarity analysis) and m_g the final output. Layers are
numbered 0..L-1 and "the output of layer t" is s3prl's ``hidden_states[t + 1]`` (for the final layer, the encoder
output, after the final LayerNorm of pre-LN models).

The upstream (:class:`MimicUpstream`, s3prl names ``mimic`` and ``mimic_local``) returns
``hidden_states = [projected features, output of mimicking layer 1, ..., output of layer N]``.

Block replacement (``span: [i, j]`` in :class:`MimicConfig`): the mimicker replaces transformer layers i..j only,
mapping the teacher's input of layer i (its ``hidden_states[i]``; for i = 0 the projected features, the
encoder's input, so the positional convolution and encoder LayerNorm belong to the span) to its output of layer
j (``hidden_states[j + 1]``); the teacher's other layers stay, frozen, with its own weights
(:class:`TeacherEncoder`, stored in the artifact). The whole stack is the case i = 0, j = L-1 and runs through the
same code with no teacher layer kept. The upstream returns by default the L+1 hidden states in the positions a
head trained on the teacher expects, a replaced span's inner positions repeating the mimicker's output (details
and the ``compact`` option: :class:`MimicUpstream`). A span replaced by the identity gives the teacher with layers
i..j dropped (for i >= 1; up to the final LayerNorm of pre-LN teachers when j = L-1, which the span replaces).

Baselines of the paper (Tables 1-4): a *non-mimicker* is an artifact whose mimicking layers are freshly (seeded)
initialised and never trained in step 1 (:func:`superb_redundancy.mimic.baselines.init_artifact`; its training
record says ``training: none``); *classifier only* is ``n_layers: 0``: no mimicking layer at all, the upstream
returns ``[projected features]`` and only the downstream head is trained.

Step 2 (adaptation) is s3prl's own runner, nothing else:

* ``run_downstream.py -u mimic_local -k ARTIFACT`` (no ``-f``): the upstream is frozen (``eval()``, run under
  ``no_grad``); only the Featurizer and the downstream head train, and ``states-*.ckpt`` holds no ``Upstream``.
  That is the authors' code default (mimicker frozen) and, with ``n_layers: 0``, the paper's classifier-only
  baseline.
* ``-f`` (``--upstream_trainable``): the paper's step 2 ("the classifier and mimicking layers are then
  finetuned"). The runner puts the upstream in ``train()`` mode and hands all its parameters to the optimizer;
  the mimicking layers, ``layer_norm`` and ``post_extract_proj`` get gradients and change, while the CNN runs
  under ``no_grad`` (``feature_grad_mult = 0``, as in s3prl's stock wav2vec2/HuBERT/WavLM experts), gets no
  gradient and stays frozen. ``states-*.ckpt`` then holds the adapted ``Upstream`` state (keys
  ``frontend.*`` and ``mimicker.*``) and ``-m evaluate -e states-*.ckpt`` loads it back into the upstream
  rebuilt from the (unchanged) artifact. Both behaviours are checked end to end by
  ``tests/mimic/test_mimic_downstream.py``.
* The paper's head reads the last mimicking layer only: pass ``-s last_hidden_state``; s3prl's default
  ``-s hidden_states`` learns a softmax-weighted sum over ``[projected features, m_1, ..., m_N]``.

The package, one concept per module (every public name is re-exported here):

* :mod:`~superb_redundancy.mimic.config`: :class:`MimicConfig` and the paper's grids of configurations;
* :mod:`~superb_redundancy.mimic.modules`: the mimicking layers and :class:`Mimicker`, their parameter count;
* :mod:`~superb_redundancy.mimic.frontend`: the teacher's checkpoint, record and front end;
* :mod:`~superb_redundancy.mimic.encoder`: the teacher's layers kept around a span;
* :mod:`~superb_redundancy.mimic.upstream`: :class:`MimicUpstream` and the hub entries ``mimic``, ``mimic_local``;
* :mod:`~superb_redundancy.mimic.artifact`: saving, reading, describing and loading artifacts;
* :mod:`~superb_redundancy.mimic.teacher_cache`: the teacher feature cache of step 1;
* :mod:`~superb_redundancy.mimic.eval_head`: the mimicker's accuracy during step 1 through a head fine-tuned on the
  teacher (for the whole stack, one on its last layer only);
* :mod:`~superb_redundancy.mimic.train`: step 1 (:func:`train_mimicker`, :func:`train_grid`);
* :mod:`~superb_redundancy.mimic.baselines`: the non-mimicker and classifier-only artifacts.
"""

from __future__ import annotations

from superb_redundancy.core.files import sha256_file
from superb_redundancy.mimic.artifact import (ARTIFACT_KEY, ARTIFACT_KIND, ARTIFACT_VERSION, describe_artifact,
                                              hub_entry, hub_entry_local, load_mimic_artifact, read_artifact,
                                              save_artifact)
from superb_redundancy.mimic.baselines import baseline_name, init_artifact, init_grid
from superb_redundancy.mimic.config import (KINDS, MimicConfig, MimicError, default_layer_i, paper_baselines,
                                            paper_grid, select_configs, tiny_baselines, tiny_grid)
from superb_redundancy.mimic.encoder import TeacherEncoder, build_teacher_encoder, encoder_state
from superb_redundancy.mimic.eval_head import HeadEvaluator
from superb_redundancy.mimic.frontend import (FRONTEND_MODULES, TeacherFrontend, build_frontend, frontend_state,
                                              teacher_checkpoint, teacher_config, teacher_record)
from superb_redundancy.mimic.modules import Mimicker, MimickingLayer, mimicker_parameter_count
from superb_redundancy.mimic.teacher_cache import (CACHE_FORMAT, SAMPLE_RATE, Teacher, TeacherCache,
                                                   build_teacher_cache, cache_layers, step1_audio)
from superb_redundancy.mimic.train import (SELECT_BY, masked_mse, resume_state_path, split_clips, train_grid,
                                           train_mimicker)
from superb_redundancy.mimic.upstream import DOWNSAMPLE_RATE, MimicUpstream

__all__ = [
    # config
    "MimicError", "MimicConfig", "KINDS", "default_layer_i", "paper_grid", "tiny_grid", "paper_baselines",
    "tiny_baselines", "select_configs",
    # modules
    "MimickingLayer", "Mimicker", "mimicker_parameter_count",
    # the teacher: front end, kept encoder layers
    "FRONTEND_MODULES", "TeacherFrontend", "build_frontend", "frontend_state", "teacher_checkpoint", "teacher_config",
    "teacher_record", "TeacherEncoder", "build_teacher_encoder", "encoder_state",
    # the upstream and its artifacts
    "MimicUpstream", "DOWNSAMPLE_RATE", "save_artifact", "read_artifact",
    "describe_artifact", "load_mimic_artifact", "sha256_file", "ARTIFACT_KEY", "ARTIFACT_KIND", "ARTIFACT_VERSION",
    # step 1: the teacher cache, training, the eval head; the baselines
    "Teacher", "TeacherCache", "cache_layers", "build_teacher_cache", "step1_audio", "CACHE_FORMAT", "SAMPLE_RATE",
    "HeadEvaluator", "SELECT_BY", "masked_mse", "split_clips", "resume_state_path", "train_mimicker", "train_grid",
    "baseline_name", "init_artifact", "init_grid",
]
