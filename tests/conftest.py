"""Session fixtures: tiny stock-format checkpoints and the synthetic corpus (built once, in a temp dir).

Nothing here applies the compat layer: tests import s3prl the way users do, after importing our package (whose
import hook applies the fixes), so a code path that would import s3prl unfixed fails here as it would for them.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a model hub
os.environ.setdefault("SUPERB_REDUNDANCY_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``), and
    ``OMP_NUM_THREADS=1`` for the processes they start. Tiny tensors on a loaded 2-core machine run faster on one
    thread than on two fighting (OpenMP barrier stalls: 1 s -> 20 ms a forward), and a child process then computes
    with the same thread count as the test (bit-for-bit comparisons)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from superb_redundancy.models.tiny import write_all

    directory = tmp_path_factory.mktemp("tiny_models")
    write_all(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_ckpts(tiny_dir):
    from superb_redundancy.models.tiny import FAMILIES

    return {family: tiny_dir / f"tiny_{family}.pt" for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_preln_wav2vec2(tmp_path_factory):
    """A pre-LN (Large-style) tiny wav2vec2: the encoder's final LayerNorm comes after the layers."""
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint("wav2vec2", tmp_path_factory.mktemp("preln") / "tiny_preln.pt",
                                 ModelConfig(layer_norm_first=True, num_layers=4), seed=1)


@pytest.fixture(scope="session")
def hub():
    from superb_redundancy.hub.install import install

    install()
    import s3prl.hub

    return s3prl.hub


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    """The synthetic corpus for all four tasks at the default scale (generated once per test session)."""
    from superb_redundancy.data.corpus import generate

    root = tmp_path_factory.mktemp("corpus")
    generate(root, progress=False)
    return root


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (scripts/gpu_check.sh runs these where there is one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
