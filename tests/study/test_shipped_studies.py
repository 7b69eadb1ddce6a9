"""Shipped studies found by name, wherever the command runs."""

import pytest

from superb_redundancy.core.errors import InputNotFound
from superb_redundancy.study.overrides import read_study
from superb_redundancy.study.sections import StudyConfigError
from superb_redundancy.study.shipped import shipped_names, studies_dir, study_path


def test_names_find_the_shipped_files_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"paper", "paper_superb", "embedded_default", "rehearsals/paper_cpu"} <= set(shipped_names())
    for name in shipped_names():
        assert study_path(name) == studies_dir() / f"{name}.yaml"
    assert study_path("paper.yaml") == study_path("studies/paper.yaml") == studies_dir() / "paper.yaml"


def test_a_file_of_the_same_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper.yaml").write_text("name: mine\n")
    assert study_path("paper.yaml").resolve() == (tmp_path / "paper.yaml").resolve()


def test_an_unknown_name_lists_what_is_shipped():
    with pytest.raises(InputNotFound, match=r"study file not found: papr \(shipped: .*rehearsals/paper_cpu"):
        study_path("papr")
    with pytest.raises(InputNotFound, match="not found: /nowhere/paper.yaml"):
        study_path("/nowhere/paper.yaml")  # an absolute path is that file, never a shipped one


def test_an_override_by_name(tmp_path):
    by_name = read_study(study_path("paper"), ["rehearsals/paper_cpu"])
    assert by_name == read_study(study_path("paper"), [studies_dir() / "rehearsals" / "paper_cpu.yaml"])
    assert by_name != read_study(study_path("paper"))
    with pytest.raises(StudyConfigError, match="override file not found: rehearsals/nope"):
        read_study(study_path("paper"), ["rehearsals/nope"])
