"""Studies: expansion, resume after a kill, the submitit path, failures recorded without stopping the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import studies
from helpers.studies import corpus_data
from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import expand
from superb_redundancy.study.runner import run_study, study_status
from superb_redundancy.study.sections import StudyConfigError
from superb_redundancy.study.shipped import study_path



def write_study(path: Path, **overrides) -> Path:
    return studies.write_study(path, {"similarity": {"batch_size": 32, "limit": 64}},
                               **{"data": {"synthetic": {"scale": 1.0}}, **overrides})


def test_expansion_of_the_shipped_studies():
    default = StudyConfig.from_yaml(study_path("embedded_default"))
    runs = expand(default)
    ids = [r.run_id for r in runs]
    assert ids[0] == "data" and len(ids) == len(set(ids))
    assert [r.stage for r in runs] == sorted(r.stage for r in runs)  # stage order
    downstream = [r for r in runs if r.kind == "downstream"]
    upstream = default.upstreams[0]
    pruned = len(upstream.prune.objectives) * len(upstream.prune.amounts)
    mimic_tasks = [t for t in default.tasks if t in (upstream.mimic_tasks or default.tasks)]
    # with the paper's step 2, a head on the base's last layer per mimic task (the mimickers' heads start from it)
    last_layer_heads = 1 if upstream.mimic_step2.kind == "paper" else 0
    assert upstream.mimic_step2.kind == "paper"
    assert len(downstream) == ((1 + pruned) * len(default.tasks) + (len(upstream.mimic) + last_layer_heads) * len(
        mimic_tasks)) * len(default.seeds)
    assert {r.kind for r in runs} == {"data", "similarity", "prune", "teacher", "mimic", "downstream", "curves"}
    # one teacher run for the upstream's step-1 mimickers; one mimic run per configuration, baselines included
    assert [r.run_id for r in runs if r.kind == "teacher"] == ["teacher/w2v2-8l"]
    assert len([r for r in runs if r.kind == "mimic"]) == len(upstream.mimic)
    # the base's runs, then the curves, then what is read off them: the prune amounts keep95
    stage = {r.run_id: r.stage for r in runs}
    for run in runs:
        assert all(stage[n] < run.stage for n in run.needs), run.run_id
    assert all("curves/w2v2-8l" in r.needs for r in runs if r.kind == "prune")
    beyond = expand(StudyConfig.from_yaml(study_path("beyond_the_paper")))
    assert {r.kind for r in beyond} == {"data", "similarity", "curves", "prune", "teacher", "heal", "mimic",
                                        "downstream"}
    paper = StudyConfig.from_yaml(study_path("paper"))
    assert len(paper.upstreams) == 4 and paper.executor.kind == "slurm"
    assert {r.kind for r in expand(paper)} >= {"similarity", "prune", "mimic", "downstream", "curves"}


@pytest.mark.parametrize("change, message", [
    ({"tasks": ["kws"]}, r"tasks: 'kws'; valid: "),
    ({"upstreams": []}, r"names no upstream"),
    ({"upstreams": [{"name": "a", "family": "bert"}]}, r"family: 'bert'; valid: "),
    ({"upstreams": [{"name": "a", "prune": {"objectives": ["middle"]}}]}, r"objectives: 'middle'"),
    ({"executor": {"kind": "k8s"}}, r"executor.kind: 'k8s'"),
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"data": {}}, r"no corpus root for \['speech_commands'\]"),
])
def test_bad_study_files(tmp_path, change, message):
    with pytest.raises(StudyConfigError, match=message):
        StudyConfig.from_yaml(write_study(tmp_path / "s.yaml", **change))


_KEEP = {"name": "w", "base": "tiny", "prune": {"objectives": ["knn-bi"], "amounts": ["keep95"]}}


@pytest.mark.parametrize("change, message", [
    ({"upstreams": [_KEEP]}, r"prune.amounts: 'keep95' is read off the pruning curves, but the study has no curves"),
    ({"upstreams": [_KEEP], "curves": {"objectives": ["bi"]}}, r"lack objective\(s\) \['knn-bi'\]"),
    ({"upstreams": [{**_KEEP, "prune": {"objectives": ["bi"], "amounts": ["keep90"]}}]},
     r"amounts: 'keep90'; a layer count .* or one of \['keep95', 'keep50'\]"),
    ({"upstreams": [{"name": "w", "mimic": [{"kind": "linear", "step1": "no"}]}]}, r"step1: 'no'; valid: true"),
    ({"upstreams": [{"name": "w", "mimic_tasks": ["kws"]}]}, r"mimic_tasks: 'kws'; valid: "),
    ({"upstreams": [{"name": "w", "heal": {"epochs": 2}}]}, r"upstreams\[w\].heal: nothing to heal"),
    ({"upstreams": [{**_KEEP, "prune": {"objectives": ["bi"], "amounts": [1]}, "heal": {"targets": "all"}}]},
     r"heal config: targets='all' is invalid; valid: final or mapped"),
    ({"upstreams": [{**_KEEP, "prune": {"objectives": ["bi"], "amounts": [1]}, "heal": {"epoch": 2}}]},
     r"heal: unknown field\(s\) \['epoch'\]"),
    ({"upstreams": [{"name": "w", "mimic": [{"kind": "linear", "span": [2, 1]}]}]}, r"span=\[2, 1\] is invalid"),
    ({"upstreams": [{"name": "w", "mimic_select_by": "best"}]},
     r"mimic_select_by: 'best'; valid: null \(no head\), mse, acc"),
    ({"upstreams": [{"name": "w", "mimic_select_by": "acc", "baseline": False}]}, r"needs baseline: true"),
    ({"upstreams": [{"name": "w", "mimic": [{"kind": "linear", "ceiling": True}]}]},
     r"mimic\[0\].ceiling: a ceiling is trained with labels only, from layers of its own; give it step1: false"),
    ({"upstreams": [{"name": "w", "mimic": [{"kind": "linear", "step1": False, "ceiling": "yes"}]}]},
     r"mimic\[0\].ceiling: 'yes'; valid: true"),
    ({"upstreams": [{"name": "w", "mimic_step2": "papers"}]},
     r"upstreams\[w\].mimic_step2: 'papers'; valid: weighted_sum, paper \(or a mapping"),
    ({"upstreams": [{"name": "w", "mimic_step2": {"kind": "paper", "patience": 0}}]},
     r"upstreams\[w\].mimic_step2.patience: 0; valid: an integer >= 1$"),
    ({"upstreams": [{"name": "w", "mimic_step2": {"kind": "paper", "max_steps": -3}}]},
     r"mimic_step2.max_steps: -3; valid: an integer >= 1 or null \(the setting's\)"),
    ({"upstreams": [{"name": "w", "mimic_step2": {"kind": "paper", "patience_": 3}}]},
     r"mimic_step2: unknown field\(s\) \['patience_'\]"),
    ({"upstreams": [{"name": "w", "mimic_select_by": "acc", "mimic": [{"kind": "linear", "n_layers": 1, "z": 8}]}]},
     r"mimic_select_by: the base's head weights all the teacher's layers, so it cannot score whole-stack "
     r"mimickers \['linear-N1-z8'\]; give them a span"),
    ({"upstreams": [{"name": "w", "mimic_select_by": "acc"}], "tasks": ["emotion"]},
     r"the base's experiment on speech_commands, which is not among the study's tasks \['emotion'\]"),
])
def test_bad_study_plans(tmp_path, change, message):
    with pytest.raises(StudyConfigError, match=message):
        StudyConfig.from_yaml(write_study(tmp_path / "s.yaml", **change))


def test_the_paper_step2_is_an_option_of_the_plan(tmp_path):
    """``mimic_step2: paper`` adds the teacher's last-layer head run on the mimickers' tasks (a reference row) and
    each mimic run of step 2 needs it; the default (s3prl's weighted sum) adds nothing and leaves the runs' keys."""
    from superb_redundancy.study.plan import variants
    from superb_redundancy.study.upstream_plan import Step2Plan

    mimic = [{"kind": "linear", "n_layers": 1, "z": 8}, {"kind": "linear", "n_layers": 1, "z": 8, "step1": False}]
    plain = StudyConfig.from_yaml(write_study(tmp_path / "a.yaml", upstreams=[
        {"name": "w", "base": "tiny", "mimic": mimic, "mimic_tasks": ["speech_commands"]}]))
    paper = StudyConfig.from_yaml(write_study(tmp_path / "b.yaml", tasks=["speech_commands", "emotion"], upstreams=[
        {"name": "w", "base": "tiny", "mimic": mimic, "mimic_tasks": ["speech_commands"], "mimic_step2": "paper"}]))
    assert plain.upstreams[0].mimic_step2 == Step2Plan() and paper.upstreams[0].mimic_step2 == Step2Plan("paper")
    assert all("step2" not in v for v in variants(plain.upstreams[0]))
    found = {v["label"]: v for v in variants(paper.upstreams[0])}
    assert found["w-last-layer-head"] == {"label": "w-last-layer-head", "kind": "reference",
                                         "reads": "last_hidden_state"}
    assert found["w-mimic-nonmimic-linear-N1-z8"]["step2"] == {"kind": "paper", "patience": 5, "eval_step": None,
                                                                "max_steps": None}
    runs = {run.run_id: run for run in expand(paper)}
    assert "downstream/w-last-layer-head/emotion/seed1337" not in runs  # the mimickers' tasks only
    for label in ("w-mimic-linear-N1-z8", "w-mimic-nonmimic-linear-N1-z8"):
        needs = runs[f"downstream/{label}/speech_commands/seed1337"].needs
        assert "downstream/w-last-layer-head/speech_commands/seed1337" in needs
    ceiling = StudyConfig.from_yaml(write_study(tmp_path / "d.yaml", upstreams=[
        {"name": "w", "base": "tiny", "mimic_step2": "paper",
         "mimic": mimic + [{"kind": "linear", "n_layers": 1, "z": 8, "step1": False, "ceiling": True}]}]))
    found = {v["label"]: v for v in variants(ceiling.upstreams[0])}
    assert found["w-mimic-ceiling-linear-N1-z8"]["ceiling"] and "ceiling" not in found["w-mimic-nonmimic-linear-N1-z8"]
    assert "mimic/w/ceiling-linear-N1-z8" in {run.run_id for run in expand(ceiling)}
    mapping = StudyConfig.from_yaml(write_study(tmp_path / "c.yaml", upstreams=[
        {"name": "w", "base": "tiny", "mimic": mimic, "mimic_step2": {"kind": "paper", "patience": 2}}]))
    assert mapping.upstreams[0].mimic_step2 == Step2Plan("paper", patience=2)


def test_baselines_and_mimic_tasks_in_the_plan(tmp_path):
    """A non-mimicker (step1: false) and classifier only are variants of their own, trained in step 2 only;
    mimic_tasks narrows the mimickers' tasks and nothing else's."""
    from superb_redundancy.study.plan import variants

    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", tasks=["speech_commands", "emotion"],
        upstreams=[{"name": "w", "base": "tiny", "mimic_tasks": ["speech_commands"],
                    "mimic": [{"kind": "linear", "n_layers": 1, "z": 8}, {"kind": "linear", "n_layers": 1, "z": 8,
                                                                           "step1": False}, {"n_layers": 0}]}]))
    found = {v["label"]: v.get("step1") for v in variants(study.upstreams[0])}
    assert found == {"w-base": None, "w-mimic-linear-N1-z8": True, "w-mimic-nonmimic-linear-N1-z8": False,
                     "w-mimic-classifier-only": False}
    tasks = {}
    for run in expand(study):
        if run.kind == "downstream":
            tasks.setdefault(run.params["variant"]["label"], set()).add(run.params["task"])
    assert tasks["w-base"] == {"speech_commands", "emotion"}
    assert all(t == {"speech_commands"} for label, t in tasks.items() if "mimic" in label)


def test_healing_and_block_replacement_in_the_plan(tmp_path):
    """Each pruned variant gets a heal run (after its prune run, before any downstream run) and a healed variant
    of its own; a block-replacing mimicker is a variant named after its span."""
    from superb_redundancy.study.plan import STAGES, variants

    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", upstreams=[{"name": "w", "base": "tiny", "heal": {"epochs": 2},
                                         "prune": {"objectives": ["bi", "span"], "amounts": [1]},
                                         "mimic": [{"kind": "linear", "n_layers": 1, "z": 8, "span": [1, 2]}]}]))
    labels = {v["label"]: v["kind"] for v in variants(study.upstreams[0])}
    runs = {r.run_id: r for r in expand(study)}
    assert "select_by" not in runs["mimic/w/linear-N1-z8-span1-2"].params  # no head unless asked
    # the mimicker and both healing runs distil from one teacher run's cached states
    assert "teacher/w" in runs["mimic/w/linear-N1-z8-span1-2"].needs and "teacher/w" in runs["heal/w/bi-1"].needs
    assert runs["teacher/w"].params["heal_targets"] == "final"
    assert labels == {"w-base": "base", "w-bi-1": "pruned", "w-bi-1-healed": "healed", "w-span-1": "pruned",
                      "w-span-1-healed": "healed", "w-mimic-linear-N1-z8-span1-2": "mimic"}
    heal = runs["heal/w/span-1"]
    assert "prune/w/span-1" in heal.needs and heal.params["config"]["epochs"] == 2
    assert STAGES[heal.stage] == "distil" and STAGES[runs["prune/w/span-1"].stage] == "derive"
    healed = runs["downstream/w-span-1-healed/speech_commands/seed1337"]
    assert "heal/w/span-1" in healed.needs and STAGES[healed.stage] == "downstream"
    # the heal settings are part of the heal run's hash, and so of the healed variant's downstream run
    other = {r.run_id: r for r in expand(StudyConfig.from_yaml(write_study(
        tmp_path / "t.yaml", upstreams=[{"name": "w", "base": "tiny", "heal": {"epochs": 3},
                                         "prune": {"objectives": ["bi", "span"], "amounts": [1]}}])))}
    assert other["heal/w/span-1"].params_hash != heal.params_hash
    assert other["downstream/w-span-1-healed/speech_commands/seed1337"].params_hash != healed.params_hash
    assert other["downstream/w-span-1/speech_commands/seed1337"].params_hash == \
        runs["downstream/w-span-1/speech_commands/seed1337"].params_hash


def test_a_shipped_model_as_base(tmp_path):
    from superb_redundancy.models.shipped import shipped_checkpoint, shipped_names
    from superb_redundancy.study.steps import base_checkpoint

    assert "pretrained_w2v2_8l" in shipped_names()
    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", upstreams=[{"name": "w", "base": "pretrained_w2v2_8l",
                                         "prune": {"objectives": ["bi"], "amounts": [8]}}]))
    assert base_checkpoint(study, study.upstreams[0]) == shipped_checkpoint("pretrained_w2v2_8l")
    # its 8 layers are known without loading anything else: 8 cannot be dropped (layer 0 stays)
    assert study.problems() == ["upstreams[w].prune.amounts: 8 layers, but the 8-layer base can drop at most 7 "
                                "(layer 0 is kept)"]


def test_a_pruned_model_chosen_twice_is_a_twin(tmp_path):
    """Two prune runs that write the same model (here BI and kNN-BI choosing the same layer): the later variant's
    downstream runs are twins of the earlier's, scheduled after them; a different model or another kind is not."""
    from superb_redundancy.study.runner import _waits_for
    from superb_redundancy.study.steps import twin_run

    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", upstreams=[{"name": "w", "base": "tiny", "baseline": True,
                                         "prune": {"objectives": ["knn-bi", "bi", "forward"], "amounts": [1]}}]))
    runs = {r.run_id: r for r in expand(study)}
    bi, knn, forward = (runs[f"downstream/w-{o}-1/speech_commands/seed1337"] for o in ("bi", "knn-bi", "forward"))
    assert twin_run(bi, study) is None  # no spec written yet: nothing to compare
    prunes = [r for r in runs.values() if r.kind == "prune"]
    assert set(_waits_for(bi, study, [*prunes, bi], {})) >= {r.run_id for r in prunes}  # until every spec is written
    for objective, dropped in (("knn-bi", [2]), ("bi", [2]), ("forward", [1])):
        folder = Path(study.workdir) / "runs" / "prune" / "w" / f"{objective}-1"
        folder.mkdir(parents=True)
        (folder / "spec.yaml").write_text(yaml.safe_dump({"base": "b.pt", "drop_layers": dropped}))
    assert twin_run(bi, study) == knn.run_id
    assert twin_run(knn, study) is None and twin_run(forward, study) is None
    assert twin_run(runs["downstream/w-base/speech_commands/seed1337"], study) is None
    assert knn.run_id in _waits_for(bi, study, [bi, forward, knn], {})
    assert _waits_for(knn, study, [bi, forward, knn], {}) == list(knn.needs)
    assert _waits_for(forward, study, [bi, forward, knn], {}) == list(forward.needs)


# ------------------------------------------------------------------------------------------ one study, end to end
#: the upstreams of the end-to-end study: ``w`` the cut-down paper's shape (keep95 read off the curves, step-1
#: mimickers and the two baselines), ``h`` healing and a block replacement chosen by the head's accuracy (on the
#: pre-LN tiny model, so that no model is another upstream's), ``f`` two amounts dropping the same layer (a twin),
#: ``bad`` a missing base (its runs fail or are skipped, the others go on)
def _upstreams(preln: Path, missing: Path) -> list[dict]:
    similarity = {"batch_size": 32, "limit": 64}
    return [
        {"name": "w", "family": "wav2vec2", "base": "tiny", "similarity": similarity,
         "prune": {"objectives": ["knn-bi", "bi"], "amounts": ["keep95"]},
         "mimic": [{"kind": "linear", "n_layers": 1, "z": 8, "epochs": 1, "batch_size": 16},
                   {"kind": "linear", "n_layers": 1, "z": 8, "step1": False}, {"n_layers": 0}],
         "mimic_tasks": ["speech_commands"]},
        {"name": "h", "family": "wav2vec2", "base": str(preln), "similarity": similarity,
         "prune": {"objectives": ["span"], "amounts": [1]}, "heal": {"epochs": 1, "batch_size": 16, "lr": 1.0e-3},
         "mimic": [{"kind": "linear", "n_layers": 1, "z": 8, "epochs": 1, "batch_size": 16, "span": [1, 2]}],
         "mimic_select_by": "acc", "mimic_tasks": ["speech_commands"]},
        {"name": "f", "family": "wav2vec2", "base": "tiny", "baseline": False,
         "similarity": {"batch_size": 32, "limit": 48}, "prune": {"objectives": ["forward"], "amounts": [1, 0.34]}},
        {"name": "bad", "family": "wav2vec2", "base": str(missing), "baseline": False,
         "similarity": {"batch_size": 32, "limit": 48}, "prune": {"objectives": ["bi"], "amounts": [1]}},
    ]


#: the tests of the end-to-end study: slow, and on one xdist worker, which runs the study once for them all
def STUDIED(test):
    return pytest.mark.slow(pytest.mark.xdist_group("studied")(test))


@pytest.fixture(scope="module")
def studied(tmp_path_factory, corpus_root, tiny_preln_wav2vec2):
    """The end-to-end study, run once (two workers) on the session's corpus: (study, states, leaderboard frame)."""
    folder = tmp_path_factory.mktemp("e2e_study")
    tasks = ["speech_commands", "emotion"]
    study = StudyConfig.from_yaml(write_study(
        folder / "s.yaml", tasks=tasks, data=corpus_data(corpus_root, tasks),
        upstreams=_upstreams(tiny_preln_wav2vec2, folder / "missing.pt"),
        curves={"task": "speech_commands", "objectives": ["forward", "bi", "knn-bi", "span"], "repeats": 2,
                "subset": 0.8}, executor={"kind": "local", "workers": 2}))
    states, frame = run_study(study, progress=False)
    return study, states, frame


def _of(states: dict, upstream: str) -> dict:
    """The states of one upstream's runs (its id, or its variants' downstream runs)."""
    return {run_id: state for run_id, state in states.items()
            if run_id != "data" and (run_id.split("/")[1] == upstream or run_id.split("/")[1].startswith(f"{upstream}-"))}


@STUDIED
def test_failed_run_is_recorded_and_the_rest_go_on(studied):
    study, states, _ = studied
    assert states["similarity/bad"]["status"] == "failed" and "missing.pt" in states["similarity/bad"]["error"]
    assert states["prune/bad/bi-1"]["status"] == "skipped"
    assert states["similarity/f"]["status"] == "done" and states["prune/f/forward-1"]["status"] == "done"
    assert yaml.safe_load(Path(states["prune/f/forward-1"]["outputs"]["spec"]).read_text())["drop_layers"]
    rows = {run_id: status for run_id, status, _ in study_status(study)}
    assert rows["similarity/bad"] == "failed" and rows["prune/f/forward-1"] == "done"


@STUDIED
def test_a_cut_down_paper_study_keeps_its_invariants(studied):
    """The embedded default's shape with fewer steps: curves first, the keep95 prune amounts read off them (the
    spec drops what the curves dropped there), step-1 mimickers and the two baselines (only the baselines train
    their layers in step 2), mimickers on their tasks only, and every run's record in the leaderboard."""
    import json

    study, states, frame = studied
    done = {**_of(states, "w"), **_of(states, "h"), **_of(states, "f")}
    assert all(s["status"] == "done" for s in done.values()), {k: s for k, s in done.items() if s["status"] != "done"}
    work = Path(study.workdir)
    curves = json.loads((work / "runs/curves/w/curves.json").read_text())
    for objective in ("knn-bi", "bi"):
        spec = yaml.safe_load((work / f"runs/prune/w/{objective}-keep95/spec.yaml").read_text())
        threshold = curves["thresholds"][objective]["95%"]
        assert sorted(spec["drop_layers"]) == threshold["dropped_layers"]  # the spec lists them in pruning order
        assert spec["notes"]["amount"] == threshold["amount"] and spec["notes"]["read_off_curves"]["as"] == "keep95"
    logs = {p.parents[2].name: p.read_text() for p in work.glob("runs/downstream/*/speech_commands/seed1337/exp.log")}
    assert " -f " not in logs["w-mimic-linear-N1-z8"]  # step 2 leaves the mimicker as step 1 made it
    assert " -f " in logs["w-mimic-nonmimic-linear-N1-z8"] and " -f " in logs["w-mimic-classifier-only"]
    assert not list(work.glob("runs/downstream/w-mimic-*/emotion"))
    assert list(work.glob("runs/downstream/w-knn-bi-keep95/emotion/seed1337/exp/log.log"))
    # one record per evaluated model: a twin (BI choosing kNN-BI's layers) reuses the run it repeats
    twins = [run_id for run_id, s in states.items() if (s.get("outputs") or {}).get("same_as")]
    assert all(t.startswith(("downstream/w-bi-keep95/", "downstream/f-forward-0p34/")) for t in twins)
    evaluated = [r for r in expand(study) if r.kind == "downstream" and states[r.run_id]["status"] == "done"]
    assert len(list((work / "records").glob("*.json"))) == len(evaluated) - len(twins)
    assert frame is not None and len(frame) > 0


@STUDIED
def test_a_study_heals_and_replaces_a_block(studied):
    """Heal runs write pruned artifacts that record their healing, and the leaderboard shows them beside the
    pruned model; a block-replacing mimicker is trained in step 1 with its own targets (not the study's layer i)
    and evaluated through mimic_local like the whole-stack one."""
    import torch

    study, states, frame = studied
    mimic_run = {r.run_id: r for r in expand(study)}["mimic/h/linear-N1-z8-span1-2"]
    assert mimic_run.params["eval_head_run"] == "downstream/h-base/speech_commands/seed1337"  # the base's experiment
    assert mimic_run.params["eval_head_run"] in mimic_run.needs
    assert all(s["status"] == "done" for s in _of(states, "h").values()), _of(states, "h")
    work = Path(study.workdir)
    healed = states["heal/h/span-1"]["outputs"]
    assert healed["loss_after"] <= healed["loss_before"]  # epoch 0 (unhealed) is a candidate: never worse
    artifact = torch.load(healed["artifact"], map_location="cpu", weights_only=True)
    record = artifact["superb_redundancy"]["healed"]
    spec = yaml.safe_load((work / "runs/prune/h/span-1/spec.yaml").read_text())
    assert record["spec"]["drop_layers"] == spec["drop_layers"] and record["epochs"] == 1
    mimic = torch.load(states["mimic/h/linear-N1-z8-span1-2"]["outputs"]["artifact"], map_location="cpu",
                       weights_only=True)
    assert mimic["config"]["span"] == [1, 2] and mimic["config"]["layer_i"] is None
    training = mimic["training"]  # step 1 through the base's KS head, the epoch chosen by its accuracy
    assert training["select_by"] == "acc" and len(training["head_accuracy"]) == 2  # epochs 0 and 1
    assert "downstream/h-base/speech_commands/seed1337/exp/" in training["eval_head"]["checkpoint"]
    labels = set(frame[frame.task == "speech_commands"].label)
    dropped = spec["drop_layers"]
    assert f"pruned_wav2vec2 drop {dropped} (span)" in labels
    assert f"pruned_wav2vec2 drop {dropped} (span) healed" in labels
    assert "mimic linear N=1 z=8 replacing 1-2, step 2: weighted sum (s3prl)" in labels  # the study's default step 2
    log = (work / "runs/downstream/h-span-1-healed/speech_commands/seed1337/exp.log").read_text()
    assert "pruned_wav2vec2_local" in log and healed["artifact"] in log


@STUDIED
def test_a_twin_reuses_the_result_of_the_run_it_repeats(studied):
    """amount 1 and 0.34 of a 3-layer model drop the same layer: one head trained, one record, one row."""
    study, states, frame = studied
    first, twin = (states[f"downstream/f-forward-{a}/speech_commands/seed1337"] for a in ("1", "0p34"))
    assert first["status"] == twin["status"] == "done"
    assert twin["outputs"] == {"same_as": "downstream/f-forward-1/speech_commands/seed1337",
                               "metric": first["outputs"]["metric"], "value": first["outputs"]["value"]}
    work = Path(study.workdir)
    assert not (work / "runs/downstream/f-forward-0p34/speech_commands/seed1337/exp").exists()
    records = [json.loads(p.read_text()) for p in (work / "records").glob("*.json")]
    assert len([r for r in records if r["task"] == "speech_commands"
                and r["description"]["objective"] == "forward"]) == 1
    assert len(frame[(frame.task == "speech_commands") & frame.label.str.endswith("(forward)")]) == 1
    rows = {run_id: detail for run_id, _, detail in study_status(study)}
    assert rows["downstream/f-forward-0p34/speech_commands/seed1337"].endswith(
        "the same model as downstream/f-forward-1/speech_commands/seed1337")


@pytest.mark.slow
def test_submitit_local_executor(tmp_path, corpus_root):
    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", data=corpus_data(corpus_root, ["speech_commands"]),
        upstreams=[{"name": "w", "family": "wavlm", "base": "tiny", "baseline": False,
                    "similarity": {"batch_size": 32, "limit": 48}, "prune": {"objectives": ["knn-bi"], "amounts": [1]}}],
        executor={"kind": "slurm", "cluster": "local", "slurm": {"timeout_min": 10}}))
    states, _ = run_study(study, progress=False)
    assert all(s["status"] == "done" for s in states.values()), states
    assert list((tmp_path / "work" / "submitit").iterdir())  # the jobs' submitit folders


@pytest.mark.slow
def test_resume_after_a_kill_loses_and_duplicates_nothing(tmp_path, corpus_root):
    path = write_study(tmp_path / "s.yaml", seeds=[1, 2], data=corpus_data(corpus_root, ["speech_commands"]),
                       upstreams=[{"name": "w", "family": "wav2vec2", "base": "tiny"}])  # base x KS x 2 seeds
    work = tmp_path / "work"
    command = [sys.executable, "-m", "superb_redundancy.cli", "study", "run", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first, second = (work / "state" / "downstream" / "w-base" / "speech_commands" / f"seed{s}.json" for s in (1, 2))
    deadline = time.time() + 600
    while time.time() < deadline and not (second.is_file() and json.loads(second.read_text())["status"] == "running"):
        time.sleep(0.5)
    assert json.loads(first.read_text())["status"] == "done"
    time.sleep(3)  # well inside the second run
    os.killpg(process.pid, signal.SIGKILL)  # the worker and its run_downstream.py child
    process.wait()
    finished = json.loads(first.read_text())
    assert json.loads(second.read_text())["status"] == "running"  # interrupted

    study = StudyConfig.from_yaml(path)
    states, frame = run_study(study, progress=False)
    assert json.loads(first.read_text()) == finished  # the finished run was not redone
    assert states["downstream/w-base/speech_commands/seed2"]["status"] == "done"
    records = list((work / "records").glob("*.json"))
    assert len(records) == 2  # one per run: nothing lost, nothing duplicated
    assert {json.loads(r.read_text())["seed"] for r in records} == {1, 2}
    assert frame is not None and (tmp_path / "board" / "index.html").is_file()


class _FakeExecutor:
    """Runs finish in the order of their given durations; records how each run was started and when."""

    def __init__(self, durations: dict[str, int], capacity: int = 2):
        self.durations, self.capacity, self.clock = durations, capacity, 0
        self.started: list[tuple[int, str, str]] = []  # (time, run id, "alone" | "pool")
        self.ends: dict[str, int] = {}

    def run_alone(self, run, study):
        self.started.append((self.clock, run.run_id, "alone"))
        self.clock += self.durations.get(run.run_id, 1)
        return {"status": "failed" if run.run_id.startswith("bad") else "done", "error": "broken"}

    def submit(self, run, study):
        self.started.append((self.clock, run.run_id, "pool"))
        self.ends[run.run_id] = self.clock + self.durations.get(run.run_id, 1)
        return run.run_id

    def wait(self, handles):
        self.clock = min(self.ends[h] for h in handles)
        return [h for h in handles if self.ends[h] == self.clock]

    def outcome(self, handle):
        return {"status": "failed" if handle.startswith("bad") else "done", "error": "broken"}

    def close(self):
        pass


def _schedule(runs, executor):
    from tqdm import tqdm

    from superb_redundancy.study import runner

    states = {r.run_id: {"status": "pending"} for r in runs}
    original = runner._write_record
    runner._write_record = lambda *args: None
    try:
        runner._schedule(list(runs), states, set(), study=None, executor=executor, bar=tqdm(disable=True),
                         workdir=Path("."), runs=list(runs))
    finally:
        runner._write_record = original
    return states


def test_a_run_starts_as_soon_as_what_it_needs_is_done():
    """No stage barrier: `quick`'s dependant starts while `slow`, of the same stage, still runs; the first run,
    alone, gets every core (run_alone); a run whose need failed is skipped, and what needs it in turn."""
    from superb_redundancy.study.plan import Run

    runs = [Run("data", "data", 0), Run("slow", "downstream", 3, needs=("data",)),
            Run("quick", "downstream", 3, needs=("data",)), Run("bad", "curves", 4, needs=("data",)),
            Run("after-quick", "mimic", 5, needs=("quick",)), Run("after-bad", "prune", 5, needs=("bad",)),
            Run("after-after-bad", "downstream", 7, needs=("after-bad",))]
    executor = _FakeExecutor({"data": 1, "slow": 10, "quick": 2, "bad": 1, "after-quick": 3})
    states = _schedule(runs, executor)
    assert executor.started[0] == (0, "data", "alone")
    start = {run_id: t for t, run_id, _ in executor.started}
    assert start["after-quick"] < start["slow"] + executor.durations["slow"]  # before the stage ends
    assert states["after-bad"]["reason"] == "needs bad, which failed"
    assert states["after-after-bad"]["reason"] == "needs after-bad, which was skipped"
    assert "after-bad" not in start and "after-after-bad" not in start
    assert all(states[r]["status"] == "done" for r in ("data", "slow", "quick", "after-quick"))
    running = [sum(s <= t < s + executor.durations.get(r, 1) for s, r, how in executor.started if how == "pool")
               for t in range(executor.clock)]
    assert max(running) == executor.capacity  # never more at a time than the executor takes


def test_a_run_alone_gets_every_core(monkeypatch):
    """A local executor's run_alone executes in the runner's process, with torch's threads for all cores (the
    pool's workers are capped to their share of them); one worker executes submitted runs in process too."""
    from superb_redundancy.study import executors
    from superb_redundancy.study.plan import Run

    calls = []
    monkeypatch.setattr(executors, "_execute", lambda run, study: calls.append((run.run_id, os.getpid())) or {})
    executors.LocalExecutor(workers=2).run_alone(Run("a", "data", 0), study=None)
    one = executors.LocalExecutor(workers=1)
    handle = one.submit(Run("b", "data", 0), study=None)
    assert one.wait([handle]) == [handle] and one.outcome(handle) == {}
    assert calls == [("a", os.getpid()), ("b", os.getpid())]  # in this process: no pool


def test_a_plan_that_makes_a_run_twice_is_refused(tmp_path, monkeypatch):
    """The plan checks its own run ids (the config does not reach up into it): a run made twice is one
    StudyConfigError line from expand, the line duplicate_runs gives the study command to list before any run."""
    from superb_redundancy.study import plan

    study = StudyConfig.from_yaml(write_study(tmp_path / "s.yaml"))
    assert plan.duplicate_runs(study) == []
    base_runs = sorted(r.run_id for r in expand(study) if r.run_id.startswith("downstream/w-base/"))
    original = plan.variants
    monkeypatch.setattr(plan, "variants", lambda up: [*original(up), original(up)[0]])  # the base's rows twice
    line = f"upstreams: these runs would be made twice: {base_runs}"
    with pytest.raises(StudyConfigError) as refused:
        expand(study)
    assert refused.value.problems == [line] and plan.duplicate_runs(study) == [line] and base_runs
