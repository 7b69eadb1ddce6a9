"""The leaderboard: every upstream variant's scores with their evidence, against its compute.

Input: run records (:mod:`superb_redundancy.results.records`), each holding the per-item test outcomes of one
evaluation, and one compute profile per variant (:func:`profile_variants`: parameters, MACs per second of
audio, batch-1 latency of every variant timed together in one process). Output, under ``leaderboard/`` by
default: a Markdown / CSV / LaTeX table per task and an overview, a figure per task of the score (with its 95%
interval) against parameters, MACs and latency, and one self-contained HTML page.

Per row (variant, task), see :mod:`superb_redundancy.statistics.evidence`: the score and its 95% interval, the test items
n it rests on, the seeds it averages; chance (majority class; WER: 100); retention against the variant's
unpruned base with its paired-bootstrap interval, and the difference. Marks: ``<=chance`` where the interval
reaches chance, ``~base`` where the variant is not distinguishable from its base. The Pareto frontier is computed
per compute axis (parameters, MACs, latency), on the points shown, and never includes a point at chance: a row is
on it when no other row is at least as good in score and at least as cheap, and strictly better in one.

Modules: :mod:`~.profiles` (compute), :mod:`~.frame` (the rows), :mod:`~.tables`, :mod:`~.figures`, :mod:`~.page`
(everything written under ``leaderboard/``).
"""
