"""Run s3prl's own downstream runner with our variants registered (train, evaluate and resume alike).

s3prl stores no upstream in its experiment checkpoints and resolves ``-u`` by name on every call, so the
registration has to happen on every call, evaluate (``-m evaluate -e``) and resume (``-a``) included.

Eight things differ from calling s3prl's ``run_downstream.py`` directly, each but the last said in one line when it
applies:

* ``--device`` defaults to ``cpu`` where CUDA is not available (s3prl's ``cuda`` default fails there).
* ``-m evaluate -e CKPT -u NAME [-k PATH] [-g CONFIG] [-p DIR]`` evaluates the head saved in CKPT with the given
  upstream. s3prl itself restores ``-u/-k/-g/-p`` from the checkpoint and ignores the flags, so it would
  silently evaluate the training upstream and append to the training experiment's log. Here the upstream is
  overridden, the results go into their own experiment folder (``-p``, by default
  ``<head expdir>/evaluations/<upstream>-<digest>``), and ``head.json`` there records where the head came from
  and which upstream was evaluated.
* Flags that s3prl would ignore (restored from the checkpoint in ``-e`` / ``-a`` runs) stop the run with an error
  instead of being dropped silently.
* A config with ``runner.feature_cache_gb: G`` keeps a frozen upstream's features in memory after a clip's first
  batch (:mod:`superb_redundancy.hub.feature_cache`); s3prl ignores the key and recomputes them every batch.
* A config with ``runner.padded_rnn: true`` has the head's packed LSTMs and GRUs computed on the padded batch
  (:mod:`superb_redundancy.hub.padded_rnn`): the same values to float rounding, several times faster on a CPU.
* Subnormal floats (below 1.2e-38) are flushed to zero, as our training commands do and GPUs do by default
  (:mod:`superb_redundancy.core.numerics`): they made a CPU's LSTM backward pass ten times slower. A run's numbers
  can then differ from s3prl's in the last digits, as they do between thread counts.
* A config with ``runner.early_stopping_patience: P`` stops training once P dev evaluations in a row brought no
  new best (:mod:`superb_redundancy.hub.early_stopping`); ``total_steps`` is then the cap.
* Checkpoints are written atomically and older ones removed only after the newer is in place
  (:mod:`superb_redundancy.hub.atomic_states`), so that a run killed at any moment resumes (``-a``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from superb_redundancy.core.errors import UserError, print_user_error

__all__ = ["main", "variants_help", "RunnerInputError", "prepare_argv", "default_evaluation_dir", "HEAD_RECORD"]

#: written into an experiment folder evaluated with another upstream than the head's
HEAD_RECORD = "head.json"
PROG = "run_downstream.py"

#: s3prl restores these from the checkpoint in -e/-a runs (everything but mode, evaluate_split, override,
#: backend, local_rank, past_exp, device): given on the command line, they would be ignored
_RESTORED = {"downstream": "-d", "config": "-c", "downstream_variant": "-v", "upstream_trainable": "-f",
             "upstream_feature_selection": "-s", "upstream_layer_selection": "-l",
             "upstream_feature_normalize": "--upstream_feature_normalize", "expname": "-n", "seed": "--seed",
             "upstream_refresh": "-r", "hub": "--hub"}
#: the upstream flags an evaluation may override
_UPSTREAM = {"upstream": "-u", "upstream_ckpt": "-k", "upstream_model_config": "-g"}


class RunnerInputError(UserError):
    """A run_downstream.py call that would not do what it says; raised before s3prl starts."""


def _parser() -> argparse.ArgumentParser:
    """The flags of s3prl 0.4.18's runner that decide what a call does (the rest pass through untouched)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-m", "--mode")
    p.add_argument("-t", "--evaluate_split")
    p.add_argument("-o", "--override")
    p.add_argument("-e", "--past_exp")
    p.add_argument("-c", "--config")
    p.add_argument("-d", "--downstream")
    p.add_argument("-v", "--downstream_variant")
    p.add_argument("--hub")
    p.add_argument("-u", "--upstream")
    p.add_argument("-k", "--upstream_ckpt")
    p.add_argument("-g", "--upstream_model_config")
    p.add_argument("-r", "--upstream_refresh", action="store_true", default=None)
    p.add_argument("-f", "--upstream_trainable", action="store_true", default=None)
    p.add_argument("-s", "--upstream_feature_selection")
    p.add_argument("-l", "--upstream_layer_selection")
    p.add_argument("--upstream_feature_normalize", action="store_true", default=None)
    p.add_argument("-n", "--expname")
    p.add_argument("-p", "--expdir")
    p.add_argument("-a", "--auto_resume", action="store_true", default=None)
    p.add_argument("--seed")
    p.add_argument("--device")
    p.add_argument("-h", "--help", action="store_true", default=None)
    return p


def variants_help() -> str:
    from superb_redundancy.hub import downstreams as downstream_registry, upstreams as registry

    lines = ["", "superb_redundancy upstream variants (-u NAME):"]
    for name, entry in sorted(registry.UPSTREAMS.items()):
        lines.append(f"  {name:<28} {entry.description}")
    lines += ["", "superb_redundancy downstream tasks (-d NAME), besides s3prl's own:"]
    for name, entry in sorted(downstream_registry.DOWNSTREAMS.items()):
        lines.append(f"  {name:<28} {entry.description}")
    lines += ["", "-m evaluate -e CKPT -u NAME [-k PATH] [-g CONFIG] [-p DIR] evaluates the head in CKPT with that "
                  "upstream, into its own folder (default <expdir>/evaluations/<upstream>-<digest>)"]
    return "\n".join(lines)


def _note(message: str) -> None:
    print(f"[superb_redundancy] {message}", file=sys.stderr)


def _head_checkpoint(past_exp: str) -> Path:
    """What s3prl resumes from for ``-e``: the file, or a folder's latest ``states-*.ckpt``."""
    path = Path(past_exp)
    if path.is_file():
        return path
    if path.is_dir():
        states = sorted(path.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[-1]))
        if states:
            return states[-1]
        raise RunnerInputError(f"-e {past_exp}: the folder holds no states-*.ckpt")
    raise RunnerInputError(f"-e {past_exp}: no such checkpoint or experiment folder")


def _read_head(path: Path) -> dict:
    from superb_redundancy.hub.experiment_checkpoint import read_experiment_checkpoint

    try:
        return read_experiment_checkpoint(path)
    except ValueError as error:
        raise RunnerInputError(f"-e {path}: {error}") from None


def _sha256(path: Optional[str]) -> Optional[str]:
    from superb_redundancy.core.files import file_sha256

    return file_sha256(path)


def _absolute(path: Optional[str]) -> Optional[str]:
    return None if path is None else str(Path(path).expanduser().resolve())


def default_evaluation_dir(head: Path, upstream: str, ckpt: Optional[str], model_config: Optional[str]) -> Path:
    """``<head expdir>/evaluations/<upstream>-<digest of the -k / -g contents>``: stable for the same upstream."""
    identity = "|".join([upstream, _sha256(ckpt) or str(ckpt), _sha256(model_config) or str(model_config)])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return head.resolve().parent / "evaluations" / f"{upstream}-{digest}"


def _override_value(key: str, value: Optional[str]) -> str:
    text = "None" if value is None else str(value)
    if "=" in text or ",," in text:
        raise RunnerInputError(f"{key}={text!r}: s3prl's -o cannot carry '=' or ',,' in a value; rename the path")
    return f"args.{key}={text}"


def _existing_upstreams(expdir: Path) -> set[tuple]:
    import yaml

    found = set()
    for args_file in expdir.glob("args_*.yaml"):
        try:
            data = yaml.safe_load(args_file.read_text()) or {}
        except yaml.YAMLError:
            continue
        found.add(tuple(data.get(k) for k in _UPSTREAM))
    return found


def _evaluate_with(argv: list[str], known: argparse.Namespace) -> list[str]:
    """Rewrite ``-m evaluate -e CKPT -u/-k/-g/-p`` into the overrides s3prl honours; write head.json."""
    from superb_redundancy.core.files import write_json

    head = _head_checkpoint(known.past_exp)
    checkpoint = _read_head(head)
    args = checkpoint["Args"]
    upstream = known.upstream or args.upstream
    changed = known.upstream is not None or known.upstream_ckpt is not None or known.upstream_model_config is not None
    ckpt = _absolute(known.upstream_ckpt) if changed else getattr(args, "upstream_ckpt", None)
    model_config = _absolute(known.upstream_model_config) if changed else getattr(args, "upstream_model_config", None)
    if changed and checkpoint.get("Upstream"):
        raise RunnerInputError(
            f"-e {head}: the head was trained with -f, so the checkpoint holds fine-tuned weights of its own upstream "
            f"{args.upstream!r}; they cannot be loaded into {upstream!r}. Evaluate it with its own upstream")
    if not changed:  # only -p: the same upstream, evaluated into another folder
        expdir = Path(known.expdir).resolve()
    else:
        expdir = Path(known.expdir).resolve() if known.expdir else default_evaluation_dir(head, upstream, ckpt,
                                                                                          model_config)
    head_expdir = head.resolve().parent
    if expdir in (head_expdir, Path(args.expdir).resolve()) and changed:
        raise RunnerInputError(f"-p {expdir} is the head's own experiment folder; evaluate another upstream into "
                               "a folder of its own")
    identity = (upstream, ckpt, model_config)
    others = _existing_upstreams(expdir) - {identity} if expdir.is_dir() else set()
    if others:
        raise RunnerInputError(f"-p {expdir} already holds an evaluation of another upstream ({sorted(others)[0][0]}); "
                               "give each upstream its own folder")
    expdir.mkdir(parents=True, exist_ok=True)
    write_json(expdir / HEAD_RECORD, {
        "head": {"checkpoint": str(head.resolve()), "sha256": _sha256(str(head)), "expdir": str(head_expdir),
                 "step": checkpoint.get("Step"), "upstream": args.upstream,
                 "upstream_ckpt": getattr(args, "upstream_ckpt", None),
                 "upstream_model_config": getattr(args, "upstream_model_config", None),
                 "downstream": getattr(args, "downstream", None)},
        "evaluated": {"upstream": upstream, "upstream_ckpt": ckpt, "upstream_model_config": model_config},
    })
    overrides = [_override_value("upstream", upstream), _override_value("upstream_ckpt", ckpt),
                 _override_value("upstream_model_config", model_config), _override_value("expdir", str(expdir))]
    if known.override and known.override.lower() != "none":
        overrides.insert(0, known.override)
    _note(f"evaluating the head of {head} with upstream {upstream!r} into {expdir}")
    return _without(argv, ("-u", "--upstream", "-k", "--upstream_ckpt", "-g", "--upstream_model_config",
                           "-p", "--expdir", "-o", "--override")) + ["-o", ",,".join(overrides)]


def _without(argv: list[str], flags: Sequence[str]) -> list[str]:
    """``argv`` without the given value-taking flags (``-x V`` and ``-xV`` / ``--flag=V`` forms)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in flags:
            skip = True
            continue
        if any(item.startswith(f + "=") for f in flags if f.startswith("--")) or \
                any(item.startswith(f) and len(item) > 2 for f in flags if len(f) == 2):
            continue
        out.append(item)
    return out


def _check_restored(known: argparse.Namespace, what: str) -> None:
    given = [flag for key, flag in _RESTORED.items() if getattr(known, key) is not None]
    if given:
        raise RunnerInputError(f"{what} restores {', '.join(given)} from the checkpoint, so s3prl would ignore "
                               f"{'them' if len(given) > 1 else 'it'}; leave {'them' if len(given) > 1 else 'it'} out")


def _check_resume(known: argparse.Namespace) -> None:
    """``-m train -e`` / ``-a``: s3prl restores the upstream from the checkpoint; a different -u/-k/-g is refused."""
    source = known.past_exp
    if known.auto_resume and not source and known.expdir and list(Path(known.expdir).glob("states-*.ckpt")):
        source = known.expdir
    if not source:
        return
    _check_restored(known, "resuming (-e / -a)")
    given = {key: getattr(known, key) for key in _UPSTREAM if getattr(known, key) is not None}
    if not given:
        return
    args = _read_head(_head_checkpoint(source))["Args"]
    for key, value in given.items():
        saved = getattr(args, key, None)
        same = value == saved or (key != "upstream" and _absolute(value) == _absolute(saved))
        if not same:
            raise RunnerInputError(f"resuming {source}: s3prl restores {_UPSTREAM[key]} {saved!r} from the checkpoint "
                                   f"and would ignore {_UPSTREAM[key]} {value!r}; start a new experiment instead")


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """The argv s3prl's runner gets: device default, evaluation overrides, refusals of ignored flags."""
    argv = list(argv)
    known, _ = _parser().parse_known_args(argv)
    if known.help:
        return argv
    if known.past_exp:
        _read_head(_head_checkpoint(known.past_exp))  # a missing, corrupt or code-carrying file: one line, now
    if known.mode == "evaluate" and not known.past_exp:
        raise RunnerInputError("-m evaluate needs -e CKPT (a states-*.ckpt or dev-best.ckpt of a trained experiment)")
    if known.mode == "evaluate":
        _check_restored(known, "-m evaluate -e")
    elif known.mode == "train":
        _check_resume(known)
        if not (known.past_exp or known.auto_resume) and known.upstream:
            _check_stock_upstream(known.upstream, known.upstream_ckpt)
    if known.device is None:  # after the checks: a refused call prints its one line alone
        import torch

        if not torch.cuda.is_available():
            _note("no CUDA device here: running on --device cpu")
            argv += ["--device", "cpu"]
    if known.mode == "evaluate" and any(getattr(known, k) is not None for k in (*_UPSTREAM, "expdir")):
        return _evaluate_with(argv, known)
    return argv


def _check_stock_upstream(name: str, ckpt: Optional[str]) -> None:
    """A stock ``<family>_local -k`` that is missing, corrupt, of another family or at odds with its config: one
    line now, instead of s3prl's traceback (or bare AssertionError) once the runner has started."""
    from superb_redundancy.hub.install import check_stock_checkpoint

    try:
        check_stock_checkpoint(name, ckpt)
    except ValueError as error:
        raise RunnerInputError(str(error)) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    from superb_redundancy.core import quiet

    argv = list(sys.argv[1:] if argv is None else argv)
    quiet.silence_known_noise()
    if "LOCAL_RANK" in os.environ and "--local_rank" not in argv:
        # torchrun passes the rank in the environment; s3prl's runner reads it from --local_rank
        argv += ["--local_rank", os.environ["LOCAL_RANK"]]
    try:
        argv = prepare_argv(argv)
    except RunnerInputError as error:
        return print_user_error(PROG, error)
    from superb_redundancy.core.numerics import flush_denormals
    from superb_redundancy.hub import atomic_states, early_stopping, feature_cache, padded_rnn
    from superb_redundancy.hub.install import install

    flush_denormals()  # before torch starts its threads (core/numerics.py says why)
    install()
    feature_cache.enable(_note)
    padded_rnn.enable(_note)
    atomic_states.enable()
    early_stopping.enable(_note)
    from s3prl import run_downstream

    sys.argv = [PROG, *argv]
    try:
        run_downstream.main()
    except SystemExit as exit:
        if {"-h", "--help"} & set(argv):
            print(variants_help())
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    # bad input found once s3prl runs (an upstream's -k, a config's runner keys)
    except UserError as error:
        return print_user_error(PROG, error)
    finally:
        while feature_cache.CACHES:  # emptied: a second call in this process reports (and keeps) only its own
            cache = feature_cache.CACHES.pop(0)
            _note(cache.summary())
            if getattr(cache, "persist", None):
                added = cache.persist()
                if added:
                    _note(f"front-end store: {added} clips added to {cache.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
