"""An installed copy (not only the checkout) finds the upstream families, under superb_redundancy.upstreams."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_setup_cfg_lists_every_package():
    found = {"superb_redundancy.upstreams", "superb_redundancy.downstream_configs", "superb_redundancy.studies"}
    for init in (ROOT / "superb_redundancy").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "upstreams").rglob("__init__.py"):
        found.add(".".join(("superb_redundancy", "upstreams", *init.parent.relative_to(ROOT / "upstreams").parts)))
    found = {p for p in found if "__pycache__" not in p and not p.endswith(".upstreams.upstreams")}
    assert found == listed_packages()


@pytest.mark.slow
def test_non_editable_install_finds_the_upstreams(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=600)
    assert not (target / "upstreams").exists()  # no generic top-level package lands in site-packages
    code = ("import superb_redundancy; superb_redundancy.install(); import s3prl.hub as hub; "
            "print(superb_redundancy.__file__); assert callable(hub.pruned_wavlm_local)")
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(target))
