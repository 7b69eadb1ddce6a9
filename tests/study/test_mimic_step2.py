"""The paper's step 2 (superb_redundancy.study.mimic_step2): the arguments each variant trains with, the head it starts
from (the teacher's last-layer head, bit for bit, through s3prl's runner with the learning rate at 0), early
stopping in the runner, and a non-mimicker whose front end stays frozen under -f."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from superb_redundancy.mimic.config import MimicConfig, MimicError
from superb_redundancy.mimic.artifact import hub_entry_local
from superb_redundancy.mimic.baselines import init_artifact
from superb_redundancy.study.mimic_step2 import head_init, step2_arguments
from superb_redundancy.results.experiment import Variant, train_and_evaluate, trained_checkpoint
from superb_redundancy.results.records import harvest_expdir
from superb_redundancy.study.upstream_plan import Step2Plan

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True) if not str(path).endswith(".ckpt") else \
        torch.load(path, map_location="cpu", weights_only=False)


def test_the_arguments_of_each_step2():
    """The weighted sum: nothing for a mimicker, -f for the baselines. The paper: the head reads m_N and starts
    from the teacher's head; a non-mimicker's layers train with a frozen front end; classifier only trains the head."""
    assert step2_arguments("weighted_sum", True, 1) == ((), False)
    assert step2_arguments("weighted_sum", False, 1) == (("-f",), False)
    assert step2_arguments("weighted_sum", False, 0) == (("-f",), False)
    init = ("-s", "last_hidden_state", "-i", "h.ckpt")
    assert step2_arguments("paper", True, 2, "h.ckpt") == (init, False)
    assert step2_arguments("paper", False, 1, "h.ckpt") == (init + ("-f",), True)
    assert step2_arguments("paper", False, 0, "h.ckpt") == (init, False)
    assert step2_arguments("paper", False, 1, "h.ckpt", frontend=True) == (init + ("-f",), False)  # a ceiling
    with pytest.raises(MimicError, match=r"step 2 'papers' is invalid; valid: weighted_sum, paper"):
        step2_arguments("papers", True, 1)


def test_runner_overrides_cap_and_patience():
    runner = {"total_steps": 300, "eval_step": 150}
    assert Step2Plan(kind="paper").runner_overrides(runner) == {
        "config.runner.total_steps": 3000, "config.runner.eval_step": 150, "config.runner.save_step": 150,
        "config.runner.early_stopping_patience": 5}
    found = Step2Plan(kind="paper", patience=2, eval_step=10, max_steps=40).runner_overrides(runner)
    assert (found["config.runner.total_steps"], found["config.runner.eval_step"],
            found["config.runner.early_stopping_patience"]) == (40, 10, 2)


def test_a_frozen_frontend_gets_no_gradient(tiny_ckpts, tmp_path):
    """``frozen_frontend: true`` in -g: under -f only the mimicking layers train (the paper's non-mimicker)."""
    path = init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(), tmp_path / "n.pt")
    options = tmp_path / "g.yaml"
    options.write_text("frozen_frontend: true\n")
    for frozen in (True, False):
        upstream = hub_entry_local(str(path), str(options) if frozen else None).train()
        upstream(torch.randn(1, 4000).unbind(0))["last_hidden_state"].square().mean().backward()
        front = [p.grad for p in upstream.frontend.parameters()]
        assert all(g is None for g in front) == frozen and any(g is not None for g in front) != frozen
        assert all(p.grad is not None for p in upstream.mimicker.parameters())
        assert all(p.requires_grad != frozen for p in upstream.frontend.parameters())
    options.write_text("frozen_frontend: maybe\n")
    with pytest.raises(MimicError, match="frozen_frontend='maybe' is invalid; valid: true, false or unset"):
        hub_entry_local(str(path), str(options))


def test_a_ceiling_is_an_untrained_artifact_recorded_as_such(tiny_ckpts, tmp_path):
    config = MimicConfig.tiny(kind="transformer")
    ceiling = _load(init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "c.pt", baseline="ceiling"))
    plain = _load(init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "n.pt"))
    assert ceiling["training"]["baseline"].startswith("ceiling") and plain["training"]["baseline"] == "non-mimicker"
    assert all(torch.equal(ceiling["mimicker"][k], v) for k, v in plain["mimicker"].items())
    with pytest.raises(MimicError, match="baseline='roof' is invalid; valid: non-mimicker, ceiling"):
        init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "x.pt", baseline="roof")


def test_head_init_refuses_a_weighted_sum_head(ks_experiment, tmp_path):
    with pytest.raises(MimicError, match=r"reads 'hidden_states' \(-s\), not the teacher's last hidden state"):
        head_init(ks_experiment, tmp_path / "h.ckpt")
    with pytest.raises(MimicError, match=r"teacher head .*nope"):
        head_init(tmp_path / "nope", tmp_path / "h.ckpt")


@pytest.mark.slow
def test_the_head_starts_from_the_teachers_and_stops_early(ks_last_layer_experiment, tiny_ckpts, corpus_root,
                                                            tmp_path):
    """Through s3prl's runner with the learning rate at 0: the head the run keeps is the teacher's last-layer head
    bit for bit (its best dev score reset), and training stops after `patience` dev evaluations without a new
    best, long before the cap."""
    teacher = _load(trained_checkpoint(ks_last_layer_experiment))["Downstream"]
    init = head_init(ks_last_layer_experiment, tmp_path / "head_init.ckpt")
    written = _load(init)["Downstream"]
    assert set(written) == set(teacher) and float(written["best_score"]) == 0.0
    assert all(torch.equal(written[k], teacher[k]) for k in teacher if k != "best_score")
    artifact = init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(), tmp_path / "m.pt")
    args, frozen = step2_arguments("paper", True, 1, init)
    assert not frozen
    patience, every = 2, 5
    overrides = {**Step2Plan(kind="paper", patience=patience, eval_step=every, max_steps=300).runner_overrides(
        {"total_steps": 30, "eval_step": 15}), "config.optimizer.lr": 0.0, "config.runner.log_step": every}
    expdir = tmp_path / "exp"
    train_and_evaluate(Variant("m", "mimic_local", ckpt=str(artifact), extra_args=args), "speech_commands",
                       corpus_root, expdir, extra_overrides=overrides)
    kept = _load(trained_checkpoint(expdir))
    assert isinstance(kept["Args"], argparse.Namespace) and kept["Args"].upstream_feature_selection == "last_hidden_state"
    assert all(torch.equal(kept["Downstream"][k], teacher[k]) for k in teacher if k != "best_score")
    # the first evaluation is a new best unless it scores 0 (the reset best); none after it (lr 0)
    log = (expdir / "log.log").read_text()
    bests = [int(step) for step in re.findall(r"New best on dev at step (\d+)", log)]
    assert bests in ([], [every])
    stop = every * (patience + len(bests))
    states = sorted(int(p.stem.split("-")[-1]) for p in expdir.glob("states-*.ckpt"))
    assert states[-1] == stop, (states, bests)
    # the record says which step 2 trained it; the teacher's last-layer head is a variant of its own
    record, reference = harvest_expdir(expdir), harvest_expdir(ks_last_layer_experiment)
    assert (record.reading.step2, record.reading.reads, record.reading.patience) == ("paper", "last_hidden_state", 2)
    assert record.variant.endswith("s:last_hidden_state") and reference.variant.endswith("s:last_hidden_state")
    assert reference.reading.step2 is None and reference.reading.reads == "last_hidden_state"


@pytest.mark.parametrize("frozen", [True, False], ids=["non-mimicker", "ceiling"])
def test_the_cnn_features_are_kept_per_clip_under_f(tiny_ckpts, tmp_path, frozen):
    """Under -f the runner's feature cache keeps only the CNN's features (``cache_frozen_part``): the CNN runs on
    the clips not seen before, and a clip's frames are those of the batch it first came in: bit for bit what the
    front end gives a batch of equal-length clips (this CNN normalises over time, so padding changes a clip's
    frames); what trains above the CNN still gets its gradient."""
    path = init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(), tmp_path / "n.pt")
    options = tmp_path / "g.yaml"
    options.write_text(f"frozen_frontend: {str(frozen).lower()}\n")
    plain, cached = (hub_entry_local(str(path), str(options)).train() for _ in range(2))
    cache = cached.cache_frozen_part(2 ** 30)
    cnn_batches = []
    cached.frontend.feature_extractor.register_forward_hook(lambda m, args, out: cnn_batches.append(len(args[0])))
    torch.manual_seed(0)
    a, b, c = torch.randn(8000), torch.randn(8000), torch.randn(5000)
    first = {"a": plain([a, b])["last_hidden_state"][0], "b": plain([a, b])["last_hidden_state"][1],
             "c": plain([c])["last_hidden_state"][0]}  # each clip as in the batch it first comes in below
    for batch, names, cnn in (([a, b], "ab", [2]), ([b, a], "ba", []), ([a, c], "ac", [1]), ([c, b, a], "cba", [])):
        cnn_batches.clear()
        got, want = cached(batch)["last_hidden_state"], plain(batch)["last_hidden_state"]
        assert cnn_batches == cnn and got.shape == want.shape
        for i, name in enumerate(names):
            n = len(first[name])
            torch.testing.assert_close(got[i, :n], first[name], rtol=1e-5, atol=1e-6)
            if len({len(w) for w in batch}) == 1:
                assert torch.equal(got[i, :n], want[i, :n])
    assert (cache.hits, cache.misses) == (6, 3) and "6 of 9 clip passes from memory" in cache.summary()
    cached([a, b])["last_hidden_state"].square().mean().backward()
    assert all(p.grad is not None for p in cached.mimicker.parameters())
    assert (cached.frontend.post_extract_proj.weight.grad is None) == frozen
    cached.frontend.feature_grad_mult = 1.0  # a CNN that trains: nothing is kept
    assert cached.cache_frozen_part(2 ** 30) is None
