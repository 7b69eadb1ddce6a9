"""A study as it runs: the file it extends, the file, then override files (study/overrides.py). The paper study is
cut down by an override, never rewritten; the SUPERB study extends the paper's."""

from __future__ import annotations


import pytest
import yaml

from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import expand
from superb_redundancy.study.sections import StudyConfigError
from superb_redundancy.study.overrides import merge, read_study
from superb_redundancy.study.shipped import study_path

PAPER = study_path("paper")
REHEARSAL = study_path("rehearsals/paper_cpu")


def test_mappings_merge_by_key_lists_replace_and_null_removes():
    base = {"data": {"asr": {"libri_root": "/a"}, "emotion": {"root": "/e"}}, "seeds": [1, 2], "curves": {"repeats": 5}}
    over = {"data": {"asr": {"bucket_file": "/b"}, "emotion": None}, "seeds": [3], "curves": None}
    assert merge(base, over) == {"data": {"asr": {"libri_root": "/a", "bucket_file": "/b"}}, "seeds": [3]}
    assert base["data"]["emotion"] == {"root": "/e"}  # neither input is changed


def test_upstreams_merge_by_name_star_to_all_remove_and_add():
    base = {"upstreams": [{"name": "a", "base": "x", "prune": {"amounts": [1]}}, {"name": "b", "base": "y"}]}
    over = {"upstreams": [{"name": "*", "base": "tiny"}, {"name": "a", "prune": {"objectives": ["bi"]}},
                          {"name": "b", "remove": True}, {"name": "c", "base": "z"}]}
    assert merge(base, over)["upstreams"] == [
        {"name": "a", "base": "tiny", "prune": {"amounts": [1], "objectives": ["bi"]}}, {"name": "c", "base": "z"}]
    with pytest.raises(StudyConfigError, match=r"remove: true names 'q', which is not an upstream; valid: \['a', 'b'\]"):
        merge(base, {"upstreams": [{"name": "q", "remove": True}]})


def test_extends_chains_and_refuses_a_loop(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"name": "a", "seeds": [1], "tasks": ["asr"]}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "a.yaml", "name": "b", "seeds": [2]}))
    assert read_study(tmp_path / "b.yaml") == {"name": "b", "seeds": [2], "tasks": ["asr"]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"extends": "d.yaml"}))
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"extends": "c.yaml"}))
    with pytest.raises(StudyConfigError, match="extends itself"):
        read_study(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({"extends": "missing.yaml"}))
    with pytest.raises(StudyConfigError, match="extends .*missing.yaml, which is not found"):
        read_study(tmp_path / "e.yaml")
    (tmp_path / "o.yaml").write_text(yaml.safe_dump({"extends": "a.yaml"}))
    with pytest.raises(StudyConfigError, match="an override file only changes keys"):
        read_study(tmp_path / "a.yaml", [tmp_path / "o.yaml"])


def test_the_paper_study_is_the_paper():
    """Four models, KS-35 only, the paper's grid of 12 mimickers plus 6 non-mimickers and classifier only,
    similarities on 1-s clips flattened (49 x d), the four objectives' curves on KS-35."""
    paper = StudyConfig.from_yaml(PAPER)
    assert [u.base for u in paper.upstreams] == ["wav2vec2_base_960", "wav2vec2_large_960", "wavlm_base", "wavlm_large"]
    assert paper.tasks == ("speech_commands_35",) and paper.curves.task == "speech_commands_35"
    for up in paper.upstreams:
        assert (up.similarity.settings["pool"], up.similarity.settings["clip_seconds"]) == ("flatten", 1.0)
        assert len([m for m in up.mimic if m.get("step1", True) and m.get("n_layers") != 0]) == 12
        assert len(up.mimic) == 19
    assert {r.kind for r in expand(paper)} == {"data", "finetune", "similarity", "curves", "prune", "teacher",
                                               "mimic", "downstream"}


def test_the_superb_study_extends_the_paper_and_shares_its_runs():
    paper, superb = StudyConfig.from_yaml(PAPER), StudyConfig.from_yaml(study_path("paper_superb"))
    assert superb.workdir == paper.workdir and superb.name != paper.name
    assert set(superb.tasks) == {"speech_commands_35", "speech_commands", "voxceleb1", "emotion", "asr"}
    shared = {r.run_id: r.params_hash for r in expand(paper)}
    theirs = {r.run_id: r.params_hash for r in expand(superb)}
    # every run of the paper study is a run of the SUPERB study, with the same key (done once, read by both)
    assert {k: theirs.get(k) for k in shared} == shared
    assert all(r.startswith("downstream/") for r in set(theirs) - set(shared))


def test_the_rehearsal_override_cuts_the_paper_down_without_editing_it():
    study = StudyConfig.from_yaml(PAPER, [REHEARSAL])
    assert [u.name for u in study.upstreams] == ["wav2vec2-base"] and study.upstreams[0].base == "tiny"
    assert study.device == "cpu" and "speech_commands_35" not in study.data
    # what the paper asks for and the override leaves alone
    assert study.upstreams[0].similarity.settings["pool"] == "flatten" and study.curves.task == "speech_commands_35"
    assert StudyConfig.load(PAPER, [REHEARSAL])[1] == []
