"""An installed copy (not only the checkout) finds the upstream families, under superb_redundancy.upstreams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_code_folder_is_a_package():
    """setup.cfg finds the packages (packages = find:), which sees only folders with an __init__.py: a code folder
    without one would be left out of the wheel."""
    folders = {path.parent for path in (ROOT / "superb_redundancy").rglob("*.py")}
    lacking = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert lacking == []


@pytest.mark.slow
def test_non_editable_install_finds_the_upstreams(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=600)
    assert not (target / "upstreams").exists()  # no generic top-level package lands in site-packages
    code = ("import superb_redundancy; superb_redundancy.install(); import s3prl.hub as hub; "
            "from superb_redundancy.models.families import FAMILIES; "
            "from superb_redundancy.study.shipped import study_path; "
            "from superb_redundancy.data.tasks import config_path; "
            "print(superb_redundancy.__file__); print(study_path('rehearsals/paper_cpu')); "
            "print(config_path('asr', 'superb').with_name('char.dict')); "
            "assert all(callable(getattr(hub, f'pruned_{f}{s}')) for f in FAMILIES for s in ('', '_local'))")
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    package, study, char_dict = result.stdout.split()
    assert all(path.startswith(str(target)) for path in (package, study, char_dict))
    assert Path(study).is_file() and Path(char_dict).is_file()  # the package data travels with the wheel
