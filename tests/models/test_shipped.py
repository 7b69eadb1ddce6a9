"""The shipped fine-tuned models agree with their records (file hash, source model, the study that made them), and
scripts/ship_finetuned.py reads s3prl's logs and predictions as they are written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from superb_redundancy.core.files import sha256_file
from superb_redundancy.models.shipped import MODELS_DIR, shipped_names
from superb_redundancy.study.shipped import study_path

ROOT = Path(__file__).resolve().parents[2]
FINETUNED = [name for name in shipped_names()
             if json.loads((MODELS_DIR / f"{name}.train.json").read_text())["format"] == "superb_redundancy.shipped/1"]


def _script():
    spec = importlib.util.spec_from_file_location("ship_finetuned", ROOT / "scripts" / "ship_finetuned.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", FINETUNED)
def test_a_shipped_model_is_the_one_its_record_describes(name):
    record = json.loads((MODELS_DIR / f"{name}.train.json").read_text())
    assert sha256_file(MODELS_DIR / f"{name}.pt") == record["sha256"]
    assert sha256_file(ROOT / record["source"]["path"]) == record["source"]["sha256"]  # the model it started from
    study = study_path(record["commands"][0].split()[-1])  # a path in the checkout when it was made: still found
    assert study.read_text() == record["study"]  # the study file as it is, comments included
    dev = [acc for _, acc in record["dev_accuracy"]]
    assert record["exported_step"] == record["dev_accuracy"][dev.index(max(dev))][0]  # the first dev-best step
    assert record["test"]["clips"] >= 400 and 0 < record["test"]["value"] <= 1


def test_the_ship_script_reads_s3prl_logs_and_predictions(tmp_path):
    script = _script()
    log = tmp_path / "log.log"
    log.write_text("train at step 50: 0.25\ndev at step 150: 0.5\nNew best on dev at step 150: 0.5\n"
                   "train at step 200: 0.75\ndev at step 300: 0.625\n")
    assert script._log_series(log) == {"train": [(50, 0.25), (200, 0.75)], "dev": [(150, 0.5), (300, 0.625)]}
    (tmp_path / "test_truth.txt").write_text("a.wav yes\nb.wav no\nc.wav up\n")
    (tmp_path / "test_predict.txt").write_text("b.wav no\na.wav no\nc.wav up\n")
    assert script._accuracy(tmp_path, "test") == (pytest.approx(2 / 3), 3)
    (tmp_path / "test_predict.txt").write_text("a.wav yes\n")
    with pytest.raises(SystemExit, match="list different clips"):
        script._accuracy(tmp_path, "test")
