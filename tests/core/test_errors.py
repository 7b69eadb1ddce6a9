"""The one error of bad input (superb_redundancy.core.errors.UserError) and its one printer: one line and exit
status 2 for a UserError raised by any command's handler; any other exception, numpy's ValueError included, keeps
its traceback."""

from __future__ import annotations

import numpy as np
import pytest

from superb_redundancy.cli import main
from superb_redundancy.cli import models as models_cli
from superb_redundancy.core.errors import InputNotFound, UserError, print_user_error


def test_every_subpackage_error_is_a_user_error_and_still_a_value_error():
    from superb_redundancy.compute.inputs import ProfileError
    from superb_redundancy.data.splits import SplitError
    from superb_redundancy.distill.errors import MimicError
    from superb_redundancy.models.checkpoints import CheckpointError
    from superb_redundancy.models.hf import HFModelError
    from superb_redundancy.pruning.curves.settings import CurvesInputError
    from superb_redundancy.pruning.heal.config import HealError
    from superb_redundancy.pruning.spec import PruneSpecError
    from superb_redundancy.results.export import ExportError
    from superb_redundancy.results.metrics import MetricNotFound
    from superb_redundancy.study.sections import StudyConfigError

    for error in (ProfileError, SplitError, MimicError, CheckpointError, HFModelError, CurvesInputError, HealError,
                  PruneSpecError, ExportError, MetricNotFound, StudyConfigError, InputNotFound):
        assert issubclass(error, UserError) and issubclass(error, ValueError), error
    assert issubclass(InputNotFound, FileNotFoundError) and issubclass(MetricNotFound, FileNotFoundError)


def test_the_printer_writes_one_line_and_returns_2(capsys):
    assert print_user_error("superb-redundancy prune", UserError("--amount 99: the model has 12 layers")) == 2
    assert capsys.readouterr().err == "superb-redundancy prune: error: --amount 99: the model has 12 layers\n"


def test_a_user_error_in_a_handler_is_one_line_and_exit_2(monkeypatch, capsys):
    calls = []

    def refuse(args):
        calls.append(args)
        raise UserError("--x 3 is not valid; valid: 1 or 2")

    monkeypatch.setattr(models_cli, "_cmd_upstreams", refuse)
    assert main(["upstreams"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["superb-redundancy upstreams: error: --x 3 is not valid; valid: 1 or 2"]
    assert captured.out == "" and len(calls) == 1


def test_a_missing_input_is_a_user_error_too(tmp_path, capsys):
    assert main(["similarity", "-u", "wav2vec2_local", "--data", str(tmp_path / "nope"), "--output-dir",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("superb-redundancy similarity: error: audio folder not found")


@pytest.mark.parametrize("bug", [
    lambda: np.zeros(4).reshape(3),           # numpy's ValueError
    lambda: int("three"),                     # Python's own
    lambda: {}["k"],                          # not a ValueError at all
], ids=["numpy", "builtin", "keyerror"])
def test_any_other_exception_propagates_with_its_traceback(bug, monkeypatch, capsys):
    monkeypatch.setattr(models_cli, "_cmd_upstreams", lambda args: bug())
    with pytest.raises(Exception) as raised:
        main(["upstreams"])
    assert not isinstance(raised.value, UserError)
    assert raised.traceback[-1].name == "<lambda>"  # the traceback reaches where it was raised
    assert "error:" not in capsys.readouterr().err
