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

The package, one concept per module; import each name from its module (this ``__init__`` loads nothing, so that
s3prl's hub entry, which needs the upstream and its artifacts, does not load the trainer):

* :mod:`~superb_redundancy.mimic.config`: :class:`MimicConfig` and the paper's grids of configurations;
* :mod:`~superb_redundancy.mimic.modules`: the mimicking layers and :class:`Mimicker`, their parameter count;
* :mod:`~superb_redundancy.mimic.encoder`: the teacher's layers kept around a span;
* :mod:`~superb_redundancy.mimic.upstream`: :class:`MimicUpstream` and the hub entries ``mimic``, ``mimic_local``;
* :mod:`~superb_redundancy.mimic.artifact`: saving, reading, describing and loading artifacts;
* :mod:`~superb_redundancy.mimic.eval_head`: the mimicker's accuracy during step 1 through a head fine-tuned on the
  teacher (for the whole stack, one on its last layer only);
* :mod:`~superb_redundancy.mimic.train`: step 1 (:func:`train_mimicker`, :func:`train_grid`);
* :mod:`~superb_redundancy.mimic.baselines`: the non-mimicker and classifier-only artifacts.

What healing shares with step 1 is in :mod:`superb_redundancy.distill`: the teacher's checkpoint, record and front
end (``distill.frontend``), the teacher feature cache (``distill.teacher_cache``), the masked MSE, the validation
split and the resume path. Step 2's settings, which a study names, are :mod:`superb_redundancy.study.mimic_step2`.
"""
