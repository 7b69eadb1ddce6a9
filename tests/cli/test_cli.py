"""The `superb-redundancy` command: one command per artefact, one-line errors for bad input."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import yaml

from helpers.audio import noise_clips
from helpers.commands import cli, one_line_error
from superb_redundancy.cli import main


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    return noise_clips(tmp_path_factory.mktemp("cli_audio"), count=24, seed=1)


def test_similarity_then_prune_write_their_artefacts(tmp_path, tiny_ckpts, audio_dir):
    base = str(tiny_ckpts["wavlm"])
    assert main(["similarity", "-u", "wavlm_local", "-k", base, "--data", str(audio_dir), "--batch-size", "12",
                 "--output-dir", str(tmp_path / "sim")]) == 0
    assert (tmp_path / "sim" / "similarity.json").is_file() and (tmp_path / "sim" / "similarity.png").is_file()
    assert main(["prune", "--family", "wavlm", "--base", base, "--objective", "knn-bi", "--amount", "1",
                 "--similarity", str(tmp_path / "sim"), "--output", str(tmp_path / "spec.yaml"),
                 "--artifact", str(tmp_path / "pruned.pt")]) == 0
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert len(spec["drop_layers"]) == 1 and spec["drop_layers"][0] != 0 and spec["notes"]["objective"] == "knn-bi"
    from superb_redundancy.hub.install import build_upstream

    model = build_upstream("pruned_wavlm_local", str(tmp_path / "pruned.pt"))
    assert list(model.dropped_layers) == spec["drop_layers"]


@pytest.mark.slow
def test_prune_drops_the_span_the_span_objective_chooses(tmp_path, tiny_ckpts, audio_dir):
    from superb_redundancy.analysis.report import SimilarityReport

    base = str(tiny_ckpts["wav2vec2"])
    assert main(["similarity", "-u", "wav2vec2_local", "-k", base, "--data", str(audio_dir), "--batch-size", "12",
                 "--permutations", "0", "--no-random-baseline", "--output-dir", str(tmp_path / "sim")]) == 0
    # 3 layers: with layer 0 allowed, two spans of 2 to choose from, 0-1 and 1-2
    result = cli("prune", "--family", "wav2vec2", "--base", base, "--objective", "span", "--amount", "2",
                 "--allow-first", "--similarity", str(tmp_path / "sim"), "--output", str(tmp_path / "spec.yaml"))
    assert result.returncode == 0, result.stderr[-2000:]
    cosine = SimilarityReport.load(tmp_path / "sim").matrices["cosine"]
    d = np.arccos(np.clip([cosine[0, 2], cosine[1, 3]], -1, 1)) / np.pi
    best = int(np.argmin(d))
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert spec["drop_layers"] == [best, best + 1] and spec["notes"]["objective"] == "span"
    assert f"layers {best}-{best + 1}" in result.stdout and f"score {d[best]:.4f}  <- dropped" in result.stdout
    assert f"layers {1 - best}-{2 - best}" in result.stdout  # the other span, with its score


@pytest.mark.parametrize(
    "args, message",
    [
        (["similarity", "-u", "wav2vec3_local", "--data", "{audio}", "--output-dir", "o"],
         "unknown upstream 'wav2vec3_local'; did you mean"),
        (["similarity", "-u", "wav2vec2_local", "--data", "/nonexistent", "--output-dir", "o"],
         "audio folder not found: /nonexistent"),
        (["prune", "--family", "wav2vec2", "--base", "{ckpt}", "--objective", "bi", "--amount", "lots"], "argument --amount: must be a layer count"),
        (["prune", "--family", "wav2vec2", "--base", "{ckpt}", "--objective", "bi", "--amount", "1"], "give --similarity REPORT"),
        (["prune-spec", "--family", "wav2vec2", "--base", "{ckpt}", "--drop", "7", "--artifact", "x.pt"], "drop_layers [7] out of range"),
        (["prune-spec", "--family", "wav2vec2", "--base", "{ckpt}", "--drop", "1"], "give --output SPEC.yaml and/or --artifact"),
        (["heal", "-k", "{ckpt}", "--data", "{audio}"], "the following arguments are required: --output"),
    ],
)
def test_bad_input_is_one_line(args, message, tiny_ckpts, audio_dir, tmp_path, capsys, monkeypatch):
    args = [a.format(audio=audio_dir, ckpt=tiny_ckpts["wav2vec2"]) for a in args]
    monkeypatch.chdir(tmp_path)
    with contextlib.suppress(SystemExit):  # argparse's refusals exit, the handlers' return
        assert main(args) == 2
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert message in last, err[-1500:]
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.pt").exists()  # refused before any work


@pytest.mark.slow
def test_bad_input_is_one_line_as_a_user_runs_it(tiny_ckpts, tmp_path):
    """One of the cases above in a fresh process: the exit status and the one line reach the shell."""
    line = one_line_error(cli("prune-spec", "--family", "wav2vec2", "--base", tiny_ckpts["wav2vec2"], "--drop", "7",
                              "--artifact", tmp_path / "x.pt"))
    assert "drop_layers [7] out of range" in line and not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_corpus_and_run_downstream_take_their_options(tmp_path):
    """Both once rejected every option (an argparse REMAINDER behind a subparser)."""
    made = cli("corpus", "--root", str(tmp_path / "data"), "--tasks", "speech_commands", "--scale", "0.01",
               "--no-progress")
    assert made.returncode == 0, made.stderr[-2000:]
    assert (tmp_path / "data" / "speech_commands_v0.01").is_dir()
    helped = cli("run-downstream", "-h")
    assert helped.returncode == 0 and "--upstream_ckpt" in helped.stdout and "pruned_wav2vec2" in helped.stdout


def test_overrides_prints_the_datarc_string(tmp_path):
    result = cli("overrides", "-d", "emotion", "--root", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == (f"config.downstream_expert.datarc.root={tmp_path}/IEMOCAP,,"
                                     f"config.downstream_expert.datarc.meta_data={tmp_path}/IEMOCAP/meta_data")


@pytest.mark.slow
def test_commands_print_no_known_third_party_noise(tiny_ckpts, audio_dir, tmp_path):
    result = cli("similarity", "-u", "wav2vec2_local", "-k", str(tiny_ckpts["wav2vec2"]), "--data", str(audio_dir),
                 "--batch-size", "12", "--output-dir", str(tmp_path / "sim"))
    assert result.returncode == 0, result.stderr[-2000:]
    for noise in ("weight_norm", "torch.jit", "ESPnet is not installed", "FutureWarning"):
        assert noise not in result.stderr, result.stderr[-2000:]


# ------------------------------------------------------------------------------------------ the parser itself
def _commands(parser=None, prefix=()):
    """Every subcommand's words (``("mimic", "train")`` for nested ones), from the parser itself."""
    import argparse

    from superb_redundancy.cli import build_parser

    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


#: run in a fresh interpreter: every subcommand's -h, then which heavy modules got imported
_HELP_SCRIPT = """
import contextlib, io, json, sys
from superb_redundancy.cli import build_parser
codes = {}
for words in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            build_parser().parse_args([*words, "-h"])
            codes[" ".join(words)] = None
        except SystemExit as exit_:
            codes[" ".join(words)] = (exit_.code, "usage:" in out.getvalue())
heavy = [m for m in ("torch", "s3prl", "transformers", "matplotlib", "pandas") if m in sys.modules]
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_of_every_command_exits_0_and_imports_no_torch():
    import json

    commands = [list(words) for words in _commands() if words[0] not in ("run-downstream",)]  # s3prl's own -h
    assert ["mimic", "train"] in commands and ["curves"] in commands and ["profile"] in commands
    result = subprocess.run([sys.executable, "-c", _HELP_SCRIPT, json.dumps([[]] + commands)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == {" ".join(words): [0, True] for words in [[]] + commands}
    assert report["heavy"] == [], "building the parser and -h must not import these"


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from superb_redundancy.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


@pytest.mark.parametrize("command", [["superb-redundancy"], ["-m", "superb_redundancy"], ["-m", "superb_redundancy.cli"]],
                         ids=" ".join)
def test_console_script_help_exits_0(command):
    from pathlib import Path

    if command[0] == "superb-redundancy":
        command = [str(Path(sys.executable).parent / "superb-redundancy")]
    else:
        command = [sys.executable, *command]
    result = subprocess.run([*command, "-h"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "COMMAND" in result.stdout and "similarity" in result.stdout, result.stderr


@pytest.mark.parametrize("words", [w for w in _commands() if w[0] != "run-downstream"],
                         ids=" ".join)
def test_every_usage_error_is_one_line(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--no-such-flag"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"superb-redundancy {' '.join(words)}: error: "), err


def test_top_level_usage_errors_are_one_line(capsys):
    for argv in ([], ["no-such-command"], ["mimic"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and ": error: " in err[0], (argv, err)


def test_choices_come_from_the_library():
    """The parser's copies of library names (kept light for -h) are the library's own."""
    from superb_redundancy.cli import build_parser
    from superb_redundancy.cli._common import FAMILY_NAMES, corpus_tasks
    from superb_redundancy.data.corpus.plans import TASKS
    from superb_redundancy.models.families import FAMILIES
    from superb_redundancy.pruning.objectives import OBJECTIVES

    assert FAMILY_NAMES == tuple(FAMILIES)
    assert corpus_tasks() == tuple(TASKS)
    prune = build_parser().parse_args(["prune", "--family", "data2vec", "--base", "b", "--objective", "span",
                                       "--amount", "1"])
    assert prune.family == "data2vec" and "span" in OBJECTIVES


def test_mimic_takes_data_and_output_dir_and_still_the_old_spellings(capsys):
    import re

    from superb_redundancy.cli import build_parser

    new = build_parser().parse_args(["mimic", "train", "--teacher", "t", "--tiny-grid", "--data", "a", "b",
                                     "--output-dir", "o"])
    assert capsys.readouterr().err == ""
    old = build_parser().parse_args(["mimic", "train", "--teacher", "t", "--tiny-grid", "--audio", "a", "b",
                                     "--output", "o"])
    assert (new.data, new.output_dir) == (old.data, old.output_dir) == (["a", "b"], "o")
    err = capsys.readouterr().err
    assert "--audio is deprecated; use --data" in err and "--output is deprecated; use --output-dir" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["mimic", "train", "-h"])
    shown = capsys.readouterr().out
    assert "--data" in shown and "--output-dir" in shown and "--audio" not in shown
    assert not re.search(r"--output(?!-)", shown)
    assert "4 CPU-sized mimickers" in shown and "z 32" in shown and "12 mimickers" in shown


def test_the_timing_line_sums_run_seconds_by_kind_and_names_the_longest_run():
    from superb_redundancy.cli.study import _timing_line

    states = {"data": {"status": "done", "started": 0.0, "finished": 30.0},
              "downstream/b/asr/seed1": {"status": "done", "started": 30.0, "finished": 330.0},
              "downstream/b/speech_commands/seed1": {"status": "done", "started": 30.0, "finished": 75.0},
              "mimic/b": {"status": "failed", "started": 75.0, "finished": 80.0}}
    line = _timing_line(states)
    assert "data 30 s, downstream 345 s;" in line and "total 375 s" in line and "mimic" not in line
    assert line.endswith("longest run downstream/b/asr/seed1 300 s")
