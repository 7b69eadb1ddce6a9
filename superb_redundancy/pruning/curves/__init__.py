"""Pruning curves without retraining (paper Fig. 2b / 2c): one trained downstream head, every pruned upstream.

Given an s3prl downstream experiment trained on an *unpruned* wav2vec2 / HuBERT / WavLM upstream (its expdir
or one of its ``states-*.ckpt`` / ``dev-best.ckpt``), :func:`pruning_curves` evaluates the **same** checkpoint
(Featurizer weights and downstream head, loaded from the checkpoint exactly as s3prl's runner does) with the
upstream pruned by each objective at every amount ``p = 0 .. L-1``, without any retraining:

- forward / bi / knn-bi / cka-bi / span never prune layer 0 (paper section 2.2); backward drops the last ``p``
  layers, i.e. keeps the first ``L - p`` (at ``p = L-1`` only layer 0 is left); span drops, at each ``p``, the
  ``p`` consecutive layers whose input and output are the most alike (its choices are not nested: no one order);
- score orders come from a :class:`~superb_redundancy.analysis.report.SimilarityReport` (``--similarity``), or from
  the similarity of the unpruned upstream's hidden states over one split of the experiment's own audio (the
  audio exactly as the expert's dataloader yields it; ``similarity_split``, dev by default, so the order never
  comes from the scored test items). The order is static (scores of the unpruned model, the paper's choice);
  ``iterative=True`` recomputes the scores on the pruned model after each removal (``L - 2`` extra similarity
  passes per score objective);
- the metric is the expert's own: its ``forward("test", ...)`` fills ``records["acc"]`` with one 0/1 entry
  per test sample, averaged the way the expert's ``log_records`` averages it (speech_commands: Python
  ``sum / len``; voxceleb1, emotion: a float32 ``torch`` mean), so amount 0 reproduces the ``test at step 0``
  line s3prl's evaluate mode writes to ``log.log``. ASR (WER) is not implemented.

**Repeats.** Every variant is evaluated once over the whole test set, in the expert's own test batching (what
s3prl's evaluate does), giving one outcome per test sample. Repeat ``r`` is the expert's average over a seeded
random subset (seed ``seed + r``) of ``subset`` x N of those samples. With ``subset = 1.0`` (default) every
repeat holds the whole test set, so the repeats are identical and the bands collapse; with ``subset < 1`` the
repeats vary the data subset and the seed. (Evaluation itself is deterministic: eval mode, no dropout.)

**Shared computation.** Per test batch the stock expert runs once in full; every pruned variant is a keep/drop
mask over the L layers, the masks form a prefix trie, and a kept layer is computed once per distinct prefix
(backward pruning is read off the full pass). Every module is called on exactly the tensors the end-to-end
pruned model would call it on, so the results are identical, not merely close (details:
:mod:`superb_redundancy.pruning.curves.shared_forward`).

Outputs (:meth:`CurveResult.save`, every file written atomically): ``curves.csv`` / ``curves.json`` (objective,
amount in layers and as a fraction, repeat, seed, metric, dropped layers), ``pruning_curves.png`` (Fig. 2b:
metric vs. prune fraction per objective, 2.5-97.5% quantile bands over repeats, dashed lines at 95% of the
unpruned score and at chance = 1/classes), ``pruned_layers_knn.png`` (Fig. 2c: per objective the layers dropped
at the largest amounts whose metric stays >= 95% and >= 50% of unpruned, drawn on the kNN similarity matrix) and
``thresholds.md`` (largest prune fraction keeping >= 95% / >= 50% of the unpruned metric). "Largest" is literal:
the largest amount whose mean metric over repeats is at or above the line, even if a smaller amount dips below.

Modules: :mod:`~.settings` (what is asked, supported tasks, input errors), :mod:`~.experiment` (the trained
experiment rebuilt), :mod:`~.shared_forward` (the variants' hidden states), :mod:`~.evaluate` (head and
similarity on them), :mod:`~.orders` (layers dropped per objective and amount), :mod:`~.result` (curves, thresholds,
files, figures), :mod:`~.run` (the pipeline). The command line is :mod:`superb_redundancy.cli.curves`.
"""
