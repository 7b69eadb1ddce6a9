"""The held-out clips of a distillation run (superb_redundancy.distill.split): seeded, disjoint, capped."""

from types import SimpleNamespace

import numpy as np

from superb_redundancy.distill.split import split_clips


def _config(seed=0, val_fraction=0.25, max_val_clips=1024):
    return SimpleNamespace(seed=seed, val_fraction=val_fraction, max_val_clips=max_val_clips)


def test_the_split_is_seeded_disjoint_and_whole():
    train, val = split_clips(40, _config())
    assert len(val) == 10 and sorted([*train, *val]) == list(range(40)) and not set(train) & set(val)
    again, other = split_clips(40, _config()), split_clips(40, _config(seed=1))
    assert np.array_equal(again[1], val) and not np.array_equal(other[1], val)


def test_the_validation_clips_are_capped_and_never_all_or_none_by_rounding():
    assert len(split_clips(40, _config(max_val_clips=3))[1]) == 3
    assert len(split_clips(2, _config(val_fraction=0.01))[1]) == 1  # rounds to 0: one where there are two clips
    assert len(split_clips(2, _config(val_fraction=0.9))[0]) == 1  # one clip always left to train on
    assert len(split_clips(40, _config(val_fraction=0.0))[1]) == 0
