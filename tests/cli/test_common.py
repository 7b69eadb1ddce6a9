"""The flag vocabulary of every subcommand (superb_redundancy.cli._common): hyphens, one spelling per concept,
one meaning per name, defaults shown by the formatter, and the older spellings still accepted (hidden)."""

from __future__ import annotations

import argparse
import re

import pytest

from superb_redundancy.cli import build_parser
from superb_redundancy.cli._common import AUTO_DEVICE

#: concept -> (its one visible spelling, spellings that would say the same thing a second way). A visible
#: option spelled as one of the others fails, wherever it is.
CONCEPTS = {
    "an output folder": ("--output-dir", ("--outdir", "--out-dir", "--output-folder", "--output-path")),
    "no progress bars": ("--no-progress", ("--quiet", "-q", "--silent", "--no-progress-bar")),
    "the checkpoint of -u": ("--upstream-ckpt", ("--ckpt", "--checkpoint", "--upstream-checkpoint")),
    "the model config of -u": ("--upstream-model-config", ("--model-config", "--upstream-config")),
    "where the model runs": ("--device", ("--gpu", "--cuda", "--devices")),
    "timed forward passes of a profile": ("--timing-passes", ("--timed-passes", "--latency-repeats")),
    "the JSON a command writes": ("--output", ("--json", "--out", "--output-file")),
}
#: names that must mean one thing wherever they are shown: the same help (and default) in every command
ONE_MEANING = ("--repeats", "--warmup", "--no-progress", "--timing-passes", "--timing-rounds", "--limit")
#: the one rule of --device, said once (cli._common.add_device_arg); the study commands override the study's
DEVICE_RULE = "auto (cuda if available, else cpu), cpu, cuda or cuda:N"
STUDY_COMMANDS = {"main", "study"}


def _parsers(parser=None, words=()):
    """(words, parser) of every subcommand, nested ones (``mimic train``) included."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name != "run-downstream":  # s3prl's own arguments, passed through
                    yield (*words, name), sub
                    yield from _parsers(sub, (*words, name))


def _visible(parser):
    """The options -h shows: (long option strings, action)."""
    for action in parser._actions:
        if action.help is not argparse.SUPPRESS and action.option_strings:
            yield action.option_strings, action


def test_the_walk_reaches_every_subcommand_and_the_nested_ones():
    names = {" ".join(words) for words, _ in _parsers()}
    assert {"mimic train", "mimic init", "similarity", "profile", "curves", "heal", "export", "corpus"} <= names


@pytest.mark.parametrize("words, parser", list(_parsers()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_long_option_is_spelled_with_hyphens_once_per_concept(words, parser):
    for strings, action in _visible(parser):
        for option in strings:
            assert "_" not in option, f"{' '.join(words)}: {option} (a hyphen, not an underscore)"
            for concept, (spelling, others) in CONCEPTS.items():
                assert option not in others, f"{' '.join(words)}: {option} says {concept}; spell it {spelling}"
        if "--output" in strings:  # --output is a file, --output-dir a folder
            assert action.metavar != "DIR" and "folder" not in (action.help or "").split(" ")[0:2], \
                f"{' '.join(words)}: --output names a folder; that is --output-dir"
        if "--output-dir" in strings:
            assert action.metavar == "DIR", f"{' '.join(words)}: --output-dir is a folder (metavar DIR)"


def test_one_meaning_per_flag_name_across_commands():
    meanings: dict[str, set] = {}
    for words, parser in _parsers():
        for strings, action in _visible(parser):
            for option in set(strings) & set(ONE_MEANING):
                meanings.setdefault(option, set()).add((action.help, repr(action.default), " ".join(words)))
    for option, seen in meanings.items():
        assert len({(help_, default) for help_, default, _ in seen}) == 1, (option, sorted(seen))
    assert "--repeats" in meanings and "--no-progress" in meanings  # the table matches what the parsers hold


def test_data_takes_folders_or_files_everywhere():
    takes = {" ".join(words): action.nargs for words, parser in _parsers() for strings, action in _visible(parser)
             if "--data" in strings}
    assert {"similarity", "prune", "heal", "mimic train", "pretrain"} <= set(takes)
    assert set(takes.values()) == {"+"}, takes


def test_device_has_one_rule_said_once():
    devices = [(words, action) for words, parser in _parsers() for strings, action in _visible(parser)
               if "--device" in strings]
    assert len(devices) >= 8
    for words, action in devices:
        assert action.help.endswith(DEVICE_RULE), (words, action.help)
        assert action.default == (None if words[0] in STUDY_COMMANDS else AUTO_DEVICE), words


@pytest.mark.parametrize("words, parser", list(_parsers()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_defaults_are_shown_by_the_formatter_not_typed_by_hand(words, parser):
    shown = parser.format_help()
    for strings, action in _visible(parser):
        help_ = action.help or ""
        if action.default not in (None, False, True, [], argparse.SUPPRESS):  # a default the formatter can show
            assert not re.search(r"\(default[: ]|\(%s\)" % re.escape(str(action.default)), help_), \
                f"{' '.join(words)} {strings[-1]}: typed default in {help_!r}"
            if help_:
                assert "(default: " in parser._get_formatter()._get_help_string(action), (words, strings)
    assert "(default: None)" not in shown and "(default: False)" not in shown


#: (command words, old spelling, new spelling, value or None for a switch, the dest they both set)
ALIASES = [
    (["similarity"], "--against_ckpt", "--against-ckpt", "c.pt", "against_ckpt"),
    (["similarity"], "--against_model_config", "--against-model-config", "g.yaml", "against_model_config"),
    (["similarity"], "--upstream_ckpt", "--upstream-ckpt", "c.pt", "upstream_ckpt"),
    (["similarity"], "--upstream_model_config", "--upstream-model-config", "g.yaml", "upstream_model_config"),
    (["similarity"], "--output", "--output-dir", "out", "output_dir"),
    (["profile"], "--upstream_ckpt", "--upstream-ckpt", "c.pt", "ckpt"),
    (["profile"], "--repeats", "--timing-passes", "4", "timing_passes"),
    (["profile"], "--warmup", "--warmup-passes", "2", "warmup_passes"),
    (["profile"], "--json", "--output", "p.json", "output"),
    (["leaderboard"], "--repeats", "--timing-rounds", "4", "timing_rounds"),
    (["leaderboard"], "--output", "--output-dir", "lb", "output_dir"),
    (["curves", "--expdir", "e"], "--output", "--output-dir", "c", "output_dir"),
    (["tiny-models"], "--output", "--output-dir", "m", "output_dir"),
    (["mimic", "init", "--teacher", "t", "--tiny-grid"], "--output", "--output-dir", "m", "output_dir"),
    (["heal", "--data", "a", "--output", "h.pt"], "--upstream_ckpt", "--upstream-ckpt", "p.pt", "upstream_ckpt"),
    (["heal", "-k", "p.pt", "--data", "a", "--output", "h.pt"], "--quiet", "--no-progress", None, "progress"),
    (["corpus"], "--quiet", "--no-progress", None, "progress"),
]
#: the minimal arguments each command needs besides the one under test
REQUIRED = {"similarity": ["-u", "x", "--data", "d"], "curves": [], "mimic": [], "heal": [], "tiny-models": [],
            "profile": [], "leaderboard": [], "corpus": []}


@pytest.mark.parametrize("words, old, new, value, dest", ALIASES, ids=lambda v: v if isinstance(v, str) else None)
def test_older_spellings_still_work_hidden(words, old, new, value, dest, capsys):
    needed = list(REQUIRED[words[0]])
    if dest != "output_dir" and words[0] in ("similarity", "curves", "mimic"):
        needed += ["--output-dir", "o"]
    given = [value] if value is not None else []
    parsed = {spelling: build_parser().parse_args([*words, *needed, spelling, *given])
              for spelling in (old, new)}
    assert getattr(parsed[old], dest) == getattr(parsed[new], dest)
    assert str(getattr(parsed[new], dest)) == (value if value is not None else "False")
    with pytest.raises(SystemExit):
        build_parser().parse_args([*(words[:2] if words[0] == "mimic" else words[:1]), "-h"])
    shown = capsys.readouterr().out
    assert re.search(rf"{re.escape(new)}(?![\w-])", shown) and not re.search(rf"{re.escape(old)}(?![\w-])", shown)
