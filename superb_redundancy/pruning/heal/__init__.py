"""Healing a pruned model: task-agnostic distillation of its kept layers towards the unpruned teacher.

The paper drops layers without retraining; retraining afterwards ("healing", Gromov et al. 2024; DPHuBERT's
distillation after structured pruning) recovers much of what pruning loses. Here the pruned model's kept
transformer layers are trained and everything else is frozen (CNN front end, feature projection, positional
convolution, the encoder's LayerNorm; dropped layers stay parameter-free identities), so that its hidden states
reproduce the teacher's on unlabelled audio:

* ``targets="final"``: the teacher's final hidden state (the output of its last layer, s3prl's
  ``hidden_states[L]``) against the pruned model's;
* ``targets="mapped"``: that, and for every kept layer ``l`` the teacher's output of layer ``l`` against the
  pruned model's ``hidden_states[l + 1]`` (a pruned model keeps the L+1 positions, so a kept layer stands where
  the teacher's layer of the same index does).

The loss is the mimic trainer's, shared through :mod:`superb_redundancy.distill`: the sum over targets of the MSE
over valid frames (``masked_mse``), equal weights; Adam. The teacher runs once, into the mimic trainer's cache
(``build_teacher_cache``): its projected CNN features are the pruned model's encoder input too (the front end is
the same; checked), so training reads only the cache. The validation split (``split_clips``: seeded,
``val_fraction`` of the clips, at most ``max_val_clips``), best-weights selection by validation loss and resumption
(``<output>.state.pt``, written after every epoch; only ``epochs`` may change) are the mimic trainer's. Unlike a
mimicker, a pruned model starts from trained layers, so the untrained weights (epoch 0) are a candidate too:
healing never returns a model that is worse on the validation clips than the unhealed one.

The model runs in eval mode throughout (no dropout, no layer drop), as it is used: the frozen parts compute
exactly what they compute at inference, and a resumed run ends with the same weights as an uninterrupted one.

The result is a pruned artifact (:mod:`superb_redundancy.pruning.upstream`): the same compact stock checkpoint
with the kept layers' weights healed and a ``healed`` record in its ``superb_redundancy`` entry (input, base,
spec, teacher, targets, loss before and after, epochs, the training history). ``pruned_<family>_local -k`` loads
it; with 0 epochs it is the unhealed model, bit for bit.

Modules: :mod:`~.config` (HealConfig, HealError), :mod:`~.model` (the pruned input), :mod:`~.teacher` (the teacher
and the loss pairs), :mod:`~.student` (the model being trained, the loss), :mod:`~.training` (:func:`heal`, the
loop and its resumable state), :mod:`~.record` (progress and the healing record), :mod:`~.artifact` (the output).
"""
