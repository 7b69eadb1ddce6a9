"""Statistics of scores (:mod:`~superb_redundancy.statistics.evidence`): the test items a score rests on, its 95%
interval, chance and retention against a base. Below everything that reports a score (curves, records, the
leaderboard); imports nothing of ours."""
