"""Pruning curves without retraining: one tiny speech_commands experiment, every pruned variant of its upstream."""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from superb_redundancy.cli import main
from superb_redundancy.cli._common import AUTO_DEVICE, resolve_device
from superb_redundancy.cli.curves import add_arguments
from superb_redundancy.pruning.curves.evaluate import evaluate_end_to_end, evaluate_shared
from superb_redundancy.pruning.curves.experiment import load_experiment, resolve_checkpoint, test_loader
from superb_redundancy.pruning.curves.orders import variant_masks
from superb_redundancy.pruning.curves.run import pruning_curves
from superb_redundancy.pruning.curves.settings import CurveSettings, CurvesInputError, PAPER_OBJECTIVES
from superb_redundancy.pruning.curves.shared_forward import SharedPrunedForward
from superb_redundancy.pruning.curves.run import _subset
from superb_redundancy.pruning.curves.settings import _python_mean
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import build_pruned
from superb_redundancy.results.metrics import read_test_metric

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def expdir(ks_experiment):
    """The session's tiny KS head, trained (and evaluated on test) by s3prl's runner on the unpruned tiny wav2vec2."""
    return ks_experiment


@pytest.fixture(scope="module")
def curves(expdir, tmp_path_factory):
    output = tmp_path_factory.mktemp("curves_out")
    result = pruning_curves(expdir, settings=CurveSettings(repeats=3, progress=False), output=output)
    return result, output


def _dropped(mask):
    return [i for i, keep in enumerate(mask) if not keep]


# ------------------------------------------------------------------------------------------- (1) sharing is exact
@slow
def test_shared_equals_each_variant_built_and_run_separately(expdir, curves):
    result, _ = curves
    experiment = load_experiment(expdir)
    num_layers = experiment.num_layers
    variants = variant_masks(result.orders, num_layers)
    assert len(variants) == len(PAPER_OBJECTIVES) * num_layers
    masks = list(dict.fromkeys(variants.values()))
    separate = {mask: build_pruned("wav2vec2", PruneSpec(base=experiment.base, drop_layers=_dropped(mask))).eval()
                for mask in masks}
    engine = SharedPrunedForward(experiment.expert, experiment.family)
    records = {mask: defaultdict(list) for mask in masks}
    worst = 0.0
    with torch.no_grad():
        for batch_id, (wavs, *others) in enumerate(test_loader(experiment)):
            wavs = [torch.FloatTensor(w) for w in wavs]
            shared = dict(engine.run(wavs, masks))
            for mask in masks:
                output = separate[mask](wavs)
                hidden = output["hidden_states"]
                assert len(hidden) == len(shared[mask]) == num_layers + 1
                for a, b in zip(hidden, shared[mask]):
                    assert a.shape == b.shape
                    worst = max(worst, (a - b).abs().max().item())
                features = experiment.featurizer(wavs, output)
                experiment.downstream("test", features, *others, records=records[mask], batch_id=batch_id)
    assert worst <= 1e-6
    for (objective, amount), mask in variants.items():
        assert records[mask]["acc"] == result.outcomes[mask], (objective, amount)
        accuracy = _python_mean(records[mask]["acc"])
        assert all(m == accuracy for m in result.metrics(objective, amount)), (objective, amount)
    # backward variants are prefixes of the unpruned pass: read off it, no layer recomputed
    engine.layer_calls = 0
    first_wavs, *_ = next(iter(test_loader(experiment)))
    batch = [torch.FloatTensor(w) for w in first_wavs]
    list(engine.run(batch, [variants[("backward", p)] for p in range(num_layers)]))
    assert engine.layer_calls == 0
    # the in-place end-to-end reference (layers_dropped, used by the benchmark) agrees too, on two batches
    dataset = experiment.downstream.test_dataset
    loader = DataLoader(Subset(dataset, range(8)), batch_size=4, shuffle=False, collate_fn=dataset.collate_fn)
    shared = evaluate_shared(experiment, masks, loader=loader, progress=False)
    assert evaluate_end_to_end(experiment, masks, loader=loader, progress=False) == shared
    assert all(shared[mask] == result.outcomes[mask][:8] for mask in masks)


@slow
@pytest.mark.parametrize("which", ["wav2vec2", "hubert", "wavlm", "preln"])
def test_shared_hidden_states_equal_build_pruned_for_every_mask(which, tiny_ckpts, tiny_preln_wav2vec2, hub):
    family = "wav2vec2" if which == "preln" else which
    ckpt = str(tiny_preln_wav2vec2 if which == "preln" else tiny_ckpts[which])
    expert = getattr(hub, f"{family}_local")(ckpt=ckpt).eval()
    from superb_redundancy.models.families import get_family

    engine = SharedPrunedForward(expert, get_family(family))
    num_layers = engine.num_layers
    assert engine.layer_norm_first == (which == "preln")
    masks = [(True, *rest) for rest in itertools.product([True, False], repeat=num_layers - 1)]
    torch.manual_seed(0)
    wavs = [torch.randn(n) for n in (16000, 12000, 9001)]  # unequal lengths: padding masks matter
    with torch.no_grad():
        shared = dict(engine.run(wavs, masks))
        for mask in masks:
            pruned = build_pruned(family, PruneSpec(base=ckpt, drop_layers=_dropped(mask))).eval()
            hidden = pruned(wavs)["hidden_states"]
            assert len(hidden) == num_layers + 1
            for a, b in zip(hidden, shared[mask]):
                assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-6, (which, mask)


# ------------------------------------------------------------------------------------------- (2) amount 0
@slow
def test_amount_zero_reproduces_the_experiments_own_test_accuracy(expdir, curves):
    result, _ = curves
    logged = read_test_metric(expdir, "speech_commands")
    assert logged.step == 0  # the evaluate-mode line
    for objective in PAPER_OBJECTIVES:
        assert result.metrics(objective, 0) == [logged.value] * 3
    assert result.unpruned == logged.value


# ------------------------------------------------------------------------------------------- (3) outputs
@slow
def test_outputs_table_and_figures(curves):
    result, output = curves
    for name in ("curves.csv", "curves.json", "pruning_curves.png", "pruned_layers_knn.png", "thresholds.md",
                 "similarity.json", "similarity.png"):
        assert (output / name).is_file() and (output / name).stat().st_size > 0, name
    assert not list(output.glob("*.tmp")) and not list(output.glob(".*.tmp"))
    table = (output / "thresholds.md").read_text()
    for objective in PAPER_OBJECTIVES:
        assert f"| {objective} " in table
    rows = list(csv.DictReader((output / "curves.csv").open()))
    assert len(rows) == len(PAPER_OBJECTIVES) * result.num_layers * 3
    assert {r["objective"] for r in rows} == set(PAPER_OBJECTIVES)
    assert {int(r["amount_layers"]) for r in rows} == set(range(result.num_layers))
    data = json.loads((output / "curves.json").read_text())
    assert data["chance"] == pytest.approx(1 / 12)  # 12 KS classes
    assert set(data["thresholds"]) == set(PAPER_OBJECTIVES)
    assert data["orders"]["backward"] == list(range(result.num_layers - 1, 0, -1))
    assert data["orders"]["forward"] == list(range(1, result.num_layers))
    for objective, order in data["orders"].items():
        assert 0 not in order  # layer 0 is never pruned


@slow
def test_subsets_iterative_orders_and_a_given_report(expdir, curves, tmp_path):
    result, output = curves
    settings = CurveSettings(objectives=("forward", "bi", "cka-bi"), repeats=3, subset=0.5, seed=7,
                             iterative=True, progress=False)
    sub = pruning_curves(expdir, similarity=output / "similarity.json", settings=settings, output=tmp_path)
    n = len(next(iter(sub.outcomes.values())))
    assert sub.similarity_source.endswith("similarity.json") and not (tmp_path / "similarity.json").exists()
    subsets = [_subset(n, 0.5, 7 + r) for r in range(3)]
    assert len({tuple(s) for s in subsets}) == 3  # repeats vary the subset...
    for point in sub.points:
        assert point.seed == 7 + point.repeat and point.samples == round(0.5 * n)
        values = sub.outcomes[tuple(i not in point.dropped_layers for i in range(sub.num_layers))]
        assert point.metric == _python_mean([values[i] for i in subsets[point.repeat]])
    for objective, order in sub.orders.items():
        assert sorted(order) == list(range(1, sub.num_layers))
    # the subset run uses the same per-sample outcomes as the full run
    for mask, values in sub.outcomes.items():
        if mask in result.outcomes:
            assert values == result.outcomes[mask]


# ------------------------------------------------------------------------------------------- (4) bad input
def _cli(*argv):
    return add_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def _edited_checkpoint(expdir, tmp_path, **changes):
    import argparse

    from superb_redundancy.core.files import load_checkpoint

    # s3prl's experiment checkpoints pickle an argparse.Namespace: allowed here explicitly, as our loaders do
    checkpoint = load_checkpoint(resolve_checkpoint(expdir), safe_globals=[argparse.Namespace])
    args = copy.copy(checkpoint["Args"])
    for key, value in changes.items():
        setattr(args, key, value)
    checkpoint["Args"] = args
    path = tmp_path / f"edited-{'-'.join(changes)}.ckpt"
    torch.save(checkpoint, path)
    return path


@slow
def test_missing_experiment_is_one_clear_line(tmp_path, capsys):
    assert main(["curves", "--expdir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "experiment not found" in err[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CurvesInputError, match="no dev-best.ckpt or states"):
        pruning_curves(tmp_path / "empty")
    assert not (tmp_path / "out").exists()


@slow
def test_unsupported_upstream_task_and_pruned_base(expdir, tmp_path, tiny_ckpts, capsys):
    bad = _edited_checkpoint(expdir, tmp_path, upstream="fbank")
    assert main(["curves", "--expdir", str(bad), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'fbank'" in err[0] and "supported" in err[0] and "wav2vec2_local" in err[0]

    with pytest.raises(NotImplementedError, match="asr"):
        pruning_curves(_edited_checkpoint(expdir, tmp_path, downstream="asr"))

    spec = PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]).to_yaml(tmp_path / "spec.yaml")
    pruned = _edited_checkpoint(expdir, tmp_path, upstream="pruned_wav2vec2", upstream_ckpt=None,
                                upstream_model_config=str(spec))
    with pytest.raises(CurvesInputError, match=r"already has layers \[1\] dropped"):
        pruning_curves(pruned)

    with pytest.raises(CurvesInputError, match="unknown objective"):
        pruning_curves(expdir, settings=CurveSettings(objectives=("sideways",)))
    with pytest.raises(CurvesInputError, match="subset"):
        pruning_curves(expdir, settings=CurveSettings(subset=0.0))


@slow
def test_similarity_report_of_another_model_is_refused(expdir, curves, tmp_path):
    from superb_redundancy.analysis.report import SimilarityReport

    report = SimilarityReport.load(curves[1] / "similarity.json")
    size = report.num_layers + 3
    other = SimilarityReport({k: np.eye(size) for k in report.matrices}, {k: [(0, size - 1)] for k in report.matrices},
                             report.settings, report.num_samples)
    other.save(tmp_path)
    with pytest.raises(CurvesInputError, match=f"{size - 1}-layer model"):
        pruning_curves(expdir, similarity=tmp_path, settings=CurveSettings(progress=False))
    with pytest.raises(CurvesInputError, match="similarity report not found"):
        pruning_curves(expdir, similarity=tmp_path / "missing.json")


@slow
def test_span_objective_curves_drop_the_best_span_at_each_amount(expdir, tmp_path):
    settings = CurveSettings(objectives=("bi", "span"), repeats=1, progress=False)
    result = pruning_curves(expdir, settings=settings, output=tmp_path)
    cosine, num_layers = result.similarity.matrices["cosine"], result.num_layers
    for p in range(num_layers):
        d = {l: np.arccos(np.clip(cosine[l, l + p], -1, 1)) / np.pi for l in range(1, num_layers - p + 1)}
        best = min(d, key=lambda l: (d[l], l))  # layer 0 kept, ties to the lower span
        want = list(range(best, best + p)) if p else []
        assert result.drops["span"][p] == want and result.dropped("span", p) == want
        values = result.outcomes[tuple(i not in want for i in range(num_layers))]
        assert result.metrics("span", p) == [_python_mean(values)]
    assert "span" not in result.orders and result.orders["bi"] == result.drops["bi"][-1]
    data = json.loads((tmp_path / "curves.json").read_text())
    assert data["drops"]["span"] == result.drops["span"] and "span" in data["thresholds"]
    assert "| span " in (tmp_path / "thresholds.md").read_text()
    rows = list(csv.DictReader((tmp_path / "curves.csv").open()))
    assert {r["amount_layers"] for r in rows if r["objective"] == "span"} == {str(p) for p in range(num_layers)}


# ------------------------------------------------------------------------------------------- (5) command line
def test_the_command_line_builds_without_torch_and_defaults_to_the_library_settings():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import argparse, sys
        from superb_redundancy.cli.curves import add_arguments
        add_arguments(argparse.ArgumentParser()).parse_args(["--expdir", "x", "--output-dir", "y"])
        assert "torch" not in sys.modules and "s3prl" not in sys.modules, "torch or s3prl imported"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from superb_redundancy.cli import curves as cli

    args = _cli("--expdir", "x", "--output-dir", "y")
    assert cli.PAPER_OBJECTIVES == PAPER_OBJECTIVES
    defaults = CurveSettings()
    # the device follows the CLI's one rule (auto: cuda if available, else cpu), resolved by main
    assert args.device == AUTO_DEVICE and resolve_device(args.device) in (defaults.device, "cuda")
    assert (tuple(args.objectives), args.repeats, args.subset, args.seed, args.iterative,
            args.similarity_split) == (defaults.objectives, defaults.repeats, defaults.subset, defaults.seed,
                                       defaults.iterative, defaults.similarity_split)


def test_the_library_parses_no_command_line():
    from pathlib import Path

    import superb_redundancy.pruning.curves as library

    for path in Path(library.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "ArgumentParser" not in text and "__main__" not in text, path.name
    assert not hasattr(library, "add_arguments") and not hasattr(library, "main")
