"""What the two kinds of distillation share: mimicking (step 1, :mod:`superb_redundancy.mimic`) and healing a pruned
model (:mod:`superb_redundancy.pruning.heal`) both train a student on a teacher's hidden states, cached once.

One concept per module, imported from where it is defined (this ``__init__`` loads nothing):

* :mod:`~superb_redundancy.distill.errors`: :class:`MimicError`, the one-line error of bad distillation input;
* :mod:`~superb_redundancy.distill.frontend`: the teacher (its checkpoint and record) and its front end;
* :mod:`~superb_redundancy.distill.teacher_cache`: the teacher run once per clip, its features and layer outputs
  cached on disk, and the step-1 audio;
* :mod:`~superb_redundancy.distill.loss`: the masked MSE over valid frames;
* :mod:`~superb_redundancy.distill.split`: the seeded held-out validation clips;
* :mod:`~superb_redundancy.distill.resume`: where a run's resumable state is written.
"""
