"""Session fixtures, each built once: tiny stock-format checkpoints, the synthetic corpus at the smallest scale the
tests need, one tiny keyword-spotting experiment, and the corpus at the main job's scale (the main job's own when
the journeys ran it in this session).

Nothing here applies the compat layer: tests import s3prl the way users do, after importing our package (whose
import hook applies the fixes), so a code path that would import s3prl unfixed fails here as it would for them.
The journeys (tests/docs/test_journeys.py) run first when they are selected: what the main job leaves behind is
then there for the tests that need the same thing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers.session import MAIN_CORPUS, SMALL_SCALE, built_once

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

    return built_once(tmp_path_factory, "tiny_models", write_all)


@pytest.fixture(scope="session")
def tiny_ckpts(tiny_dir):
    from superb_redundancy.models.tiny import FAMILIES

    return {family: tiny_dir / f"tiny_{family}.pt" for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_preln_wav2vec2(tmp_path_factory):
    """A pre-LN (Large-style) tiny wav2vec2: the encoder's final LayerNorm comes after the layers."""
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    def build(folder: Path) -> None:
        write_tiny_checkpoint("wav2vec2", folder / "tiny_preln.pt", ModelConfig(layer_norm_first=True, num_layers=4),
                              seed=1)

    return built_once(tmp_path_factory, "preln", build) / "tiny_preln.pt"


@pytest.fixture(scope="session")
def hub():
    from superb_redundancy.hub.install import install

    install()
    import s3prl.hub

    return s3prl.hub


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    """The synthetic corpus for all four tasks at :data:`SMALL_SCALE` (every layout, list file and split of the
    main job's corpus; KS: 600 training clips, 30 dev, 36 test): generated once per test run, shared by the xdist workers."""
    from superb_redundancy.data.corpus.generate import generate

    return built_once(tmp_path_factory, "corpus", lambda root: generate(root, scale=SMALL_SCALE, progress=False))


@pytest.fixture(scope="session")
def full_corpus(request, tmp_path_factory):
    """The synthetic corpus at the main job's scale (1.0, seed 0, all four tasks): the main job's own when the
    journeys ran it in this session, else generated here."""
    from superb_redundancy.data.corpus.generate import generate

    main = request.config.stash.get(MAIN_CORPUS, None)
    if main is not None:
        return main
    root = tmp_path_factory.mktemp("full_corpus")
    generate(root, progress=False)
    return root


@pytest.fixture(scope="session")
def ks_experiment(tmp_path_factory, tiny_ckpts, corpus_root):
    """THE tiny keyword-spotting experiment (tiny wav2vec2, tiny setting: 30 steps, a checkpoint every 15, one
    kept), trained and evaluated on test once by s3prl's runner: its expdir. Tests read it, never write into it
    (an evaluation of its head goes to a folder of its own)."""
    from superb_redundancy.results.experiment import Variant, train_and_evaluate

    def build(folder: Path) -> None:
        train_and_evaluate(Variant("base", "wav2vec2_local", ckpt=str(tiny_ckpts["wav2vec2"])), "speech_commands",
                           corpus_root, folder / "exp")

    return built_once(tmp_path_factory, "ks_experiment", build) / "exp"


@pytest.fixture(scope="session")
def ks_last_layer_experiment(tmp_path_factory, tiny_ckpts, corpus_root):
    """The tiny keyword-spotting experiment of :func:`ks_experiment` with a head on the teacher's last hidden state
    only (``-s last_hidden_state``: no weighted sum over the layers), the head a whole-stack mimicker is scored
    through: its expdir. Read-only, like :func:`ks_experiment`."""
    from superb_redundancy.results.experiment import Variant, train_and_evaluate

    def build(folder: Path) -> None:
        train_and_evaluate(Variant("base-last", "wav2vec2_local", ckpt=str(tiny_ckpts["wav2vec2"]),
                                   extra_args=("-s", "last_hidden_state")), "speech_commands", corpus_root,
                           folder / "exp")

    return built_once(tmp_path_factory, "ks_last_layer_experiment", build) / "exp"


# Peak size of the run's temporary folders (measured on a clean-clone run of the whole suite, passed tests' folders
# removed as they pass: setup.cfg); below it the run would end in dozens of unrelated "could not create" errors.
TEMP_SPACE_NEEDED_GB = 3.0


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):
        return  # the xdist controller checked already
    where = Path(session.config.option.basetemp or tempfile.gettempdir())
    where = where if where.exists() else where.parent
    free_gb = shutil.disk_usage(where).free / 1e9
    if free_gb < TEMP_SPACE_NEEDED_GB:
        pytest.exit(f"{free_gb:.1f} GB free in {where}; the suite needs about {TEMP_SPACE_NEEDED_GB:.0f} GB of "
                    "temporary space (free some, or point TMPDIR or --basetemp at a larger disk)", returncode=4)


def pytest_collection_modifyitems(config, items):
    import torch

    # The journeys first: the main job's corpus then serves the tests that need one at its scale (full_corpus).
    # Then the other xdist groups (modules whose module fixture runs a study: one worker builds it once), then
    # the rest: the longest units are handed out first and the short tests fill in at the end.
    def order(item) -> int:
        if item.nodeid.startswith("tests/docs/test_journeys.py"):
            return 0
        return 1 if item.get_closest_marker("xdist_group") else 2

    items.sort(key=order)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (scripts/gpu_check.sh runs these where there is one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node Slurm cluster (tests/helpers/slurm.py), started once per session (about 3 s) and stopped at
    its end; ``SLURM_CONF`` points this process's Slurm commands (and submitit's) at it. Skips, saying why, where
    it cannot start. Tests using it belong to ``xdist_group("slurm")``, so one worker starts it."""
    from helpers.slurm import Cluster, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster
    cluster.stop()
