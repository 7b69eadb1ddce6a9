"""Every command block of the documentation, run verbatim, as a user runs it: README.md, then the docs site's pages
in mkdocs.yml's nav order, then the downstream configs' README.

The blocks are parsed from the files (so the docs and the tests cannot drift) and run in document order, each
in a fresh ``bash`` (or ``python``) subprocess, in a copy of the repository whose ``.venv`` is this one, with
nothing applied beforehand: no fixture imports our package or the compat layer for them. Each block carries an
id (``<!-- journey: ID -->`` on the line before it) naming the checks below; a block without one, an unknown
id, or an id without its block fails. Variables a block reads with a default (``${BASE:-wav2vec2}``) are the
user's to set: the checks set them to the synthetic corpus and tiny settings the main job leaves behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from helpers.docs import DOWNSTREAM_CONFIGS_README, README, nav_pages
from helpers.session import MAIN_CORPUS

ROOT = Path(__file__).resolve().parents[2]
#: in the order the blocks run: a block may use what an earlier one left behind (the main job's outputs first)
DOCS = (README, *nav_pages(), DOWNSTREAM_CONFIGS_README)
_BLOCK = re.compile(r"(?:<!-- journey: (?P<id>[\w-]+) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M)
RUNNABLE = ("bash", "python")

#: one xdist worker runs the journeys and then what reuses the main job's outputs (tests/conftest.py); the journeys
#: themselves are marked slow, the checks of the blocks' ids are not
pytestmark = [pytest.mark.xdist_group("main_job")]


@dataclass(frozen=True)
class Block:
    doc: Path
    id: Optional[str]
    lang: str
    body: str


def doc_blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        for match in _BLOCK.finditer(doc.read_text()):
            if match["lang"] in RUNNABLE:
                found.append(Block(doc, match["id"], match["lang"], match["body"]))
    return found


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    def tail(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


# ---------------------------------------------------------------------------------------------- the checks
def _ok(outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.tail()
    assert "Traceback" not in outcome.stderr, outcome.tail()


def check_main(out: Outcome, box: Path) -> None:
    _ok(out)
    assert (box / "leaderboard" / "index.html").is_file()
    assert list(box.glob("work/study/runs/similarity/*/similarity.png"))
    assert list(box.glob("work/study/runs/curves/*/pruning_curves.png"))
    assert "leaderboard:" in out.stdout
    assert "study embedded-default:" in out.stdout and "failed" not in out.stdout.split("study embedded-default:")[1]
    check_leaderboard_evidence(box / "leaderboard")


def check_leaderboard_evidence(board: Path) -> None:
    """Every task has its unpruned base and a pruned variant, all profiled; every row carries n and an interval; no
    row at chance is on a Pareto frontier; a variant with >10% fewer MACs than its base has the lower median latency
    (all variants are timed together, interleaved)."""
    import math

    import pandas as pd

    tables = [pd.read_csv(path) for path in sorted(board.glob("*.csv")) if path.stem != "overview"]
    assert {t.task.iloc[0] for t in tables} == {"speech_commands", "voxceleb1", "emotion", "asr"}
    for table in tables:
        assert table.is_base.sum() == 1 and table.label.str.contains(" drop ").any(), table.label
        assert table.params.notna().all() and table.macs.notna().all(), table[["label", "params", "macs"]]
        assert (table.n > 0).all() and table[["low", "high"]].notna().all().all(), table
        assert ((table.low <= table.value) & (table.value <= table.high)).all(), table
        pareto = table[["pareto_params", "pareto_macs", "pareto_latency_ms"]].any(axis=1)
        assert not (table.at_chance & pareto).any(), table[table.at_chance & pareto]
        base = table[table.is_base].iloc[0]
        for _, row in table[~table.is_base].iterrows():
            if not math.isnan(row.macs) and row.macs < 0.9 * base.macs:
                assert row.latency_ms < base.latency_ms, (row.label, row.latency_ms, base.latency_ms)


def check_tests(out: Optional[Outcome], box: Path) -> None:
    """Not run (it is this test suite); CI must call it as written."""
    block = next(b for b in doc_blocks() if b.id == "tests")
    command = block.body.strip()
    assert command.startswith("bash scripts/test.sh")
    assert re.search(rf"^{re.escape(command)}\b", (ROOT / ".ci" / "run").read_text(), re.M)


def check_artefacts(out: Outcome, box: Path) -> None:
    _ok(out)
    assert (box / "work/sim/similarity.json").is_file() and (box / "work/sim/similarity.png").is_file()
    spec = yaml.safe_load((box / "work/spec.yaml").read_text())
    assert len(spec["drop_layers"]) == 1 and 0 not in spec["drop_layers"] and spec["notes"]["objective"] == "knn-bi"
    assert (box / "work/pruned.pt").is_file()
    iterative = yaml.safe_load((box / "work/spec_it.yaml").read_text())
    assert iterative["notes"]["iterative"] is True and len(iterative["drop_layers"]) == 1
    for name in ("curves.csv", "curves.json", "pruning_curves.png", "pruned_layers_knn.png", "thresholds.md"):
        assert (box / "work/curves" / name).is_file(), name
    artifacts = [p for p in (box / "work/mimic").glob("*.pt") if not p.name.endswith(".state.pt")]
    assert len(artifacts) == 4, sorted((box / "work/mimic").iterdir())  # the tiny grid: L/T x N 1, 2


def _test_lines(expdir: Path) -> list[str]:
    return [line for line in (expdir / "log.log").read_text().splitlines() if line.startswith("test at step")]


def check_real_models(out: Outcome, box: Path) -> None:
    import json

    _ok(out)
    assert len(_test_lines(box / "result/emotion_w2v2_drop345")) == 1
    # the full model's head: its own evaluation once in its own log, the pruned evaluation in a folder of its own
    assert len(_test_lines(box / "result/emotion_w2v2")) == 1
    pruned = box / "result/emotion_w2v2_head_drop345"
    assert len(_test_lines(pruned)) == 1
    head = json.loads((pruned / "head.json").read_text())
    assert Path(head["head"]["expdir"]).resolve() == (box / "result/emotion_w2v2").resolve()
    assert head["head"]["upstream_model_config"].endswith("full.yaml")
    assert head["evaluated"]["upstream"] == "pruned_wav2vec2"
    assert head["evaluated"]["upstream_model_config"] == str((box / "prune.yaml").resolve())


def check_quickstart(out: Outcome, box: Path) -> None:
    """The README's Python example: the shipped 8-layer model with 2 layers dropped keeps its 9 hidden states and
    loses less than 2/8 of its parameters (the front end stays); its spec is written for s3prl's -g."""
    _ok(out)
    match = re.search(r"^(\d+) hidden states of shape \(1, \d+, \d+\); (\d+)% fewer parameters$", out.stdout, re.M)
    assert match, out.tail()
    assert int(match[1]) == 9 and 0 < int(match[2]) < 25, match[0]
    assert yaml.safe_load((box / "work/prune_2_5.yaml").read_text())["drop_layers"] == [2, 5]


def check_python_api(out: Outcome, box: Path) -> None:
    _ok(out)
    match = re.search(r"^(\d+) hidden states of shape \(1, (\d+), (\d+)\)$", out.stdout, re.M)
    assert match, out.tail()
    assert int(match[1]) == JOURNEY_BASE_LAYERS + 1 and int(match[2]) in (49, 50)


def check_template(out: Optional[Outcome], box: Path) -> None:
    """A code template, not a command: it must at least compile."""
    for block in doc_blocks():
        if block.id == "template":
            compile(block.body, f"{block.doc.name}:template", "exec")


def check_paper_study(out: Outcome, box: Path) -> None:
    """Both studies' cost offline, per run kind and in total (the corpora are absent: the released sizes); `study
    run` without the paper's corpora is refused before any run starts."""
    totals = [line for line in out.stdout.splitlines() if line.startswith("| total")]
    assert "study paper: 241 runs on cuda" in out.stdout and "study paper-superb: 385 runs on cuda" in out.stdout
    assert len(totals) == 2 and all(float(line.split("|")[3].replace(",", "")) > 100 for line in totals)
    assert out.returncode == 2, out.tail()
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert any(line.startswith("problem: data.") and "/data/" in line and "not found" in line for line in lines)
    assert lines[-1].endswith("nothing was run"), out.tail()
    assert not (box / "work/paper/runs").exists()


def check_paper_rehearsal(out: Optional[Outcome], box: Path) -> None:
    """Run by tests/study/test_rehearsal.py (killed once and resumed, on the session's corpus): the block names the
    files that test runs."""
    block = next(b for b in doc_blocks() if b.id == "paper-rehearsal")
    command = block.body.split("#")[0].split()
    assert command == ["superb-redundancy", "study", "run", "paper", "--override", "rehearsals/paper_cpu"]
    test = (ROOT / "tests" / "study" / "test_rehearsal.py").read_text()
    assert 'PAPER, REHEARSAL = study_path("paper"), study_path("rehearsals/paper_cpu")' in test and '"study", "run", str(PAPER), "--override", str(REHEARSAL)' in test


def check_beyond(out: Outcome, box: Path) -> None:
    """The beyond-the-paper study: every run done; pruned and healed side by side on the leaderboard, the block
    replacements labelled by their span; healing never ends above the loss it started from."""
    import json

    import pandas as pd

    _ok(out)
    assert "failed" not in out.stdout.split("study beyond-the-paper:")[1]
    labels = set(pd.read_csv(box / "work/beyond/leaderboard/speech_commands.csv").label)
    assert {label.removesuffix(" healed") for label in labels if label.endswith(" healed")} == \
        {label for label in labels if " drop [" in label and not label.endswith(" healed")}
    assert {label for label in labels if "replacing 4-7" in label} == {
        "mimic linear N=1 z=32 replacing 4-7, step 2: weighted sum (s3prl)",
        "mimic transformer N=1 z=32 replacing 4-7, step 2: weighted sum (s3prl)"}
    for state in (box / "work/beyond/state/heal").rglob("*.json"):
        outputs = json.loads(state.read_text())["outputs"]
        assert outputs["loss_after"] <= outputs["loss_before"], state


def check_configs_synthetic(out: Outcome, box: Path) -> None:
    _ok(out)
    assert (box / "result/asr_tiny/test-clean-noLM-hyp.ark").is_file()


def check_configs_real(out: Outcome, box: Path) -> None:
    _ok(out)
    assert (box / "result/sid/states-30.ckpt").is_file()


@dataclass(frozen=True)
class Journey:
    check: Callable[[Optional[Outcome], Path], None]
    env: dict = field(default_factory=dict)  # values: relative to the sandbox when they start with "work/"
    run: bool = True
    timeout: int = 900
    #: blocks of one chain run in document order in one sandbox; chains are independent (the beyond study makes
    #: its own corpus), so the xdist workers can run them side by side
    chain: str = "main"


#: the layer count of the BASE model the real-models block is given (drop_layers [3, 4, 5] needs >= 6)
JOURNEY_BASE_LAYERS = 6
JOURNEY_BASE = "work/journeys/base6.pt"

JOURNEYS = {
    "main": Journey(check_main, timeout=2400),
    "tests": Journey(check_tests, run=False),
    "quickstart": Journey(check_quickstart),
    "artefacts": Journey(check_artefacts),
    "real-models": Journey(check_real_models, env={"BASE": JOURNEY_BASE, "IEMOCAP": "work/study/data/IEMOCAP",
                                                   "SETTING": "tiny"}),
    "python-api": Journey(check_python_api),
    "paper-study": Journey(check_paper_study),
    "paper-rehearsal": Journey(check_paper_rehearsal, run=False),
    "beyond": Journey(check_beyond, timeout=1800, chain="beyond"),
    "template": Journey(check_template, run=False),
    "configs-synthetic": Journey(check_configs_synthetic),
    "configs-real": Journey(check_configs_real, env={"VOXCELEB1": "work/study/data/voxceleb1", "SETTING": "tiny"}),
}


# ---------------------------------------------------------------------------------------------- running them
def test_every_block_has_a_known_journey():
    ids = [b.id for b in doc_blocks()]
    assert None not in ids, [b.body[:80] for b in doc_blocks() if b.id is None]
    assert len(ids) == len(set(ids)), ids
    assert set(ids) == set(JOURNEYS), (sorted(set(ids) - set(JOURNEYS)), sorted(set(JOURNEYS) - set(ids)))
    assert ids[0] == "main", ids  # the other blocks of the main chain run on what the main job leaves behind


def test_docs_are_the_readme_then_the_nav_then_the_configs():
    pages = nav_pages()
    assert DOCS[0] == README and DOCS[-1] == DOWNSTREAM_CONFIGS_README and DOCS[1:-1] == tuple(pages)
    assert all(page.is_file() for page in DOCS), [str(page) for page in DOCS if not page.is_file()]
    assert ROOT / "docs" / "architecture.md" in pages


def _sandbox(tmp: Path) -> Path:
    """A copy of the checkout (what git tracks or would track) sharing this interpreter's environment."""
    box = tmp / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (box / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, box / name)
    (box / ".venv").symlink_to(Path(sys.prefix))
    return box


def _environment(box: Path, extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERB_REDUNDANCY_", "PYTEST", "PYTHONPATH"))}
    env.update(PATH=f"{box / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1",
               SUPERB_REDUNDANCY_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update({k: str(box / v) if v.startswith("work/") else v for k, v in extra.items()})
    return env


def _user_model(box: Path) -> None:
    """The user's BASE for the real-models block: a wav2vec2 checkpoint deep enough to drop layers 3-5."""
    code = ("from superb_redundancy.models.config import ModelConfig; "
            "from superb_redundancy.models.tiny import write_tiny_checkpoint; "
            f"write_tiny_checkpoint('wav2vec2', {JOURNEY_BASE!r}, ModelConfig(num_layers={JOURNEY_BASE_LAYERS}))")
    subprocess.run([sys.executable, "-c", code], cwd=box, check=True, capture_output=True, timeout=300)


def _check_bootstrapped() -> None:
    """The blocks' `bash scripts/main.sh` bootstraps the shared .venv; a stale one would be reinstalled from the
    sandbox (re-pointing the editable install there). scripts/test.sh bootstraps first, so this holds in CI."""
    import hashlib

    want = hashlib.sha1(b"".join((ROOT / p).read_bytes() for p in ("setup.cfg", "setup.py", "scripts/bootstrap.sh")))
    stamp = Path(sys.prefix) / ".superb_redundancy_stamp"
    if not stamp.is_file() or stamp.read_text().strip() != want.hexdigest():
        pytest.fail("the environment is not bootstrapped for this checkout: run `bash scripts/test.sh` "
                    "(or `bash scripts/bootstrap.sh` first)")


def _share_main_corpus(config, box: Path, outcome: Optional[Outcome]) -> None:
    """The main job's corpus, once it is complete, serves the tests that need one at its scale (full_corpus)."""
    from superb_redundancy.data.corpus.generate import MARKER

    corpus = box / "work" / "study" / "data"
    if outcome is not None and outcome.returncode == 0 and (corpus / MARKER).is_file():
        config.stash[MAIN_CORPUS] = corpus


def _run_chain(chain: str, request, tmp_path_factory) -> tuple[Path, dict[str, Outcome]]:
    _check_bootstrapped()
    box = _sandbox(tmp_path_factory.mktemp(f"journeys-{chain}"))
    if chain == "main":
        _user_model(box)
    outcomes: dict[str, Outcome] = {}
    for block in doc_blocks():
        journey = JOURNEYS.get(block.id)
        if journey is None or not journey.run or journey.chain != chain:
            continue
        if block.lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", block.body]
        else:
            script = box / "work" / "journeys" / f"{block.id}.py"
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(block.body)
            command = ["python", str(script)]
        env = _environment(box, journey.env)
        command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
        try:
            result = subprocess.run(command, cwd=box, env=env, capture_output=True, text=True,
                                    timeout=journey.timeout)
            outcomes[block.id] = Outcome(result.returncode, result.stdout, result.stderr)
        except subprocess.TimeoutExpired as error:
            outcomes[block.id] = Outcome(-1, str(error.stdout or ""), f"timed out after {journey.timeout} s")
    if chain == "main":
        _share_main_corpus(request.config, box, outcomes.get("main"))
    return box, outcomes


@pytest.fixture(scope="module")
def chains(request, tmp_path_factory):
    """Each chain's sandbox and outcomes, run when its first journey is tested (on the xdist worker of its group)."""
    done: dict[str, tuple[Path, dict[str, Outcome]]] = {}

    def get(chain: str) -> tuple[Path, dict[str, Outcome]]:
        if chain not in done:
            done[chain] = _run_chain(chain, request, tmp_path_factory)
        return done[chain]

    return get


def _journey_params() -> list:
    """The journeys by id; each chain but the main one in an xdist group of its own."""
    return [pytest.param(name, marks=() if JOURNEYS[name].chain == "main" else
                         pytest.mark.xdist_group(f"journeys-{JOURNEYS[name].chain}")) for name in sorted(JOURNEYS)]


@pytest.mark.slow
@pytest.mark.parametrize("journey", _journey_params())
def test_journey(journey, chains):
    spec = JOURNEYS[journey]
    box, outcomes = chains(spec.chain)
    if spec.run:
        assert journey in outcomes, f"no block ran for {journey}"
    spec.check(outcomes.get(journey), box)
