"""The package's public face: ``superb_redundancy.<name>`` for the main entry points, loaded on first use."""

import subprocess
import sys

import pytest

import superb_redundancy


@pytest.mark.parametrize("name", superb_redundancy.__all__)
def test_every_public_name_is_the_object_of_its_module(name):
    import importlib

    value = getattr(superb_redundancy, name)
    module = importlib.import_module(superb_redundancy._PUBLIC[name])
    assert value is getattr(module, name)


def test_importing_the_package_loads_no_torch_and_unknown_names_fail():
    code = ("import sys, superb_redundancy as sr; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'PruneSpec' in dir(sr)\n"
            "try:\n    sr.no_such_name\nexcept AttributeError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "has no attribute 'no_such_name'" in result.stdout
