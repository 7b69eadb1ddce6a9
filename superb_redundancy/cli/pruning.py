"""``superb-redundancy prune-spec``, ``prune``, ``heal`` and ``curves``: pruning transformer layers, by explicit
indices or by an objective, healing a pruned model, and pruning curves without retraining."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from superb_redundancy.cli._common import (FAMILY_NAMES, add_aliased, add_clip_source, add_data_args, add_device_arg,
                                           add_progress_arg, check_enough_clips, check_output_file)

from superb_redundancy.core.errors import UserError

__all__ = ["register"]

#: the families heal takes (superb_redundancy.pruning.heal.load_pruned_model refuses data2vec)
HEAL_FAMILIES = tuple(f for f in FAMILY_NAMES if f != "data2vec")


def register(sub) -> None:
    for add in (_add_prune_spec, _add_prune, _add_heal, _add_curves):
        add(sub)


def _add_prune_spec(sub) -> None:
    p = sub.add_parser("prune-spec", help="write a prune spec (-g) and/or a pruned artifact (-k) by layer indices",
                       description="Write a prune spec (loads as -u pruned_<family> -g SPEC) and/or a pruned "
                                   "artifact (-u pruned_<family>_local -k ARTIFACT) dropping or keeping the given "
                                   "transformer layers.")
    p.add_argument("--family", required=True, choices=FAMILY_NAMES, help="the base's model family")
    p.add_argument("--base", required=True, help="s3prl hub name of the family, or a checkpoint path")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--drop", type=int, nargs="+", metavar="LAYER", help="0-based transformer layers to drop")
    group.add_argument("--keep", type=int, nargs="+", metavar="LAYER", help="0-based transformer layers to keep")
    p.add_argument("--compact", action="store_true", help="hidden_states only of kept layers")
    p.add_argument("--output", metavar="SPEC.yaml", help="prune spec YAML to write")
    p.add_argument("--artifact", metavar="PATH.pt", help="self-describing pruned checkpoint to write")
    p.set_defaults(func=_cmd_prune_spec)


def _add_prune(sub) -> None:
    from superb_redundancy.pruning.objectives import OBJECTIVES  # numpy only: no torch

    p = sub.add_parser("prune", help="pruning order by an objective; writes the prune spec and/or artifact",
                       description="Order the transformer layers by a pruning objective (scores from a similarity "
                                   "report, or computed on --data), print the order, and write the prune spec "
                                   "and/or the pruned artifact dropping --amount layers.")
    p.add_argument("--family", required=True, choices=FAMILY_NAMES, help="the base's model family")
    p.add_argument("--base", required=True,
                   help="s3prl hub name of the family, a checkpoint path, or a Hugging Face save_pretrained folder")
    p.add_argument("--objective", required=True, choices=sorted(OBJECTIVES), help="the pruning objective")
    p.add_argument("--amount", required=True, type=_amount,
                   help="layers to drop: a count (3) or a fraction of L (0.25)")
    p.add_argument("--similarity", metavar="REPORT", help="similarity.json (or its folder) of the base (else "
                                                          "computed from --data)")
    add_data_args(p, required=False)
    p.add_argument("--iterative", action="store_true", help="recompute scores after each removal (needs --data)")
    p.add_argument("--allow-first", action="store_true", help="allow pruning layer 0 (never, by default)")
    p.add_argument("--output", metavar="SPEC.yaml", help="prune spec YAML to write")
    p.add_argument("--artifact", metavar="PATH.pt", help="pruned artifact to write")
    p.add_argument("--output-dir", metavar="DIR",
                   help="Hugging Face --base: the pruned save_pretrained folder to write")
    p.set_defaults(func=_cmd_prune)


def _add_heal(sub) -> None:
    p = sub.add_parser("heal", help="heal a pruned model: distil its kept layers towards the unpruned teacher",
                       description="Train the kept layers of a pruned model towards the unpruned teacher's hidden "
                                   "states (no labels), everything else frozen; writes the healed artifact.")
    model = p.add_mutually_exclusive_group(required=True)
    add_aliased(model, "-k", "--upstream-ckpt", aliases=("--upstream_ckpt",), deprecated=False, metavar="ARTIFACT",
                help="pruned artifact to heal (prune --artifact)")
    add_aliased(model, "-g", "--upstream-model-config", aliases=("--upstream_model_config",), deprecated=False,
                metavar="SPEC", help="prune spec to heal (with --family; base: from the spec or --base)")
    p.add_argument("--family", choices=HEAL_FAMILIES,
                   help="the model family: needed with -g; with -k, checked against the artifact's")
    p.add_argument("--base", help="with -g: the base checkpoint the spec prunes (default: the spec's base:)")
    p.add_argument("--teacher", help="stock checkpoint (or hub name) to distil from (default: the pruned model's "
                                     "base; its CNN front end must be the pruned model's)")
    p.add_argument("--targets", choices=["final", "mapped"], default="final",
                   help="final: the teacher's last hidden state; mapped: also, for each kept layer l, the teacher's "
                        "layer l output")
    add_clip_source(p, seed_help="seed of --limit, the validation split and the shuffling")
    p.add_argument("--epochs", type=int, default=10, help="0: the unhealed model, with its loss recorded")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (small: the layers start trained)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out clips for validation")
    p.add_argument("--max-val-clips", type=int, default=1024, help="at most this many validation clips")
    p.add_argument("--cache-dir", help="teacher cache (default: OUTPUT_STEM.teacher_cache beside --output; a mimic "
                                       "train cache of the same teacher and audio is reused)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="cache dtype")
    add_device_arg(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted healing (<output>.state.pt)")
    add_progress_arg(p)
    p.add_argument("--output", required=True, metavar="HEALED.pt",
                   help="the healed artifact to write (for -u pruned_<family>_local -k)")
    p.set_defaults(func=_cmd_heal, flush_denormals=True)


def _add_curves(sub) -> None:
    from superb_redundancy.cli import curves

    p = sub.add_parser("curves", help="pruning curves without retraining from a trained downstream experiment",
                       description="Pruning curves without retraining: a downstream experiment trained on the "
                                   "unpruned upstream, evaluated with the upstream pruned by each objective at "
                                   "every amount.")
    curves.add_arguments(p)
    p.set_defaults(func=curves.run, flush_denormals=True)


def _cmd_prune_spec(args: argparse.Namespace) -> int:
    if not (args.output or args.artifact):
        raise UserError("give --output SPEC.yaml and/or --artifact PATH.pt")
    from superb_redundancy.models.checkpoints import load_base_checkpoint, resolve_base
    from superb_redundancy.models.families import get_family
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import save_pruned

    check_output_file(args.output, "--output")
    check_output_file(args.artifact, "--artifact")
    spec = PruneSpec(base=args.base, drop_layers=args.drop, keep_layers=args.keep, compact=args.compact)
    # a spec that does not fit its base would only fail when loaded: check it against the base's layers now
    # (a hub name not downloaded yet is checked when --artifact downloads it, or when the spec is loaded)
    family = get_family(args.family)
    path = resolve_base(args.base, family, download=bool(args.artifact))
    if path is not None:
        checkpoint = load_base_checkpoint(path, family, mmap=True)
        try:
            spec = spec.described(family.name, family.num_layers(checkpoint))
        except UserError as error:
            raise UserError(f"{error} (--base {path})") from None
        del checkpoint
    else:
        print(f"note: {args.base} is not downloaded; the spec is not checked against its layers", file=sys.stderr)
        if spec.drop_layers is not None:
            spec = spec.described(family.name)
    if args.artifact:
        from superb_redundancy.hub import install as registry

        registry.install()
        path = save_pruned(args.family, spec, args.artifact)
        print(f"pruned artifact: {path}  (use: -u pruned_{args.family}_local -k {path})")
    if args.output:
        path = spec.to_yaml(args.output)
        print(f"prune spec: {path}  (use: -u pruned_{args.family} -g {path})")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from superb_redundancy.analysis.report import SimilarityReport, SimilaritySettings
    from superb_redundancy.core.audio import check_audio, list_audio
    from superb_redundancy.models.hf import is_hf_model_dir, read_hf_config
    from superb_redundancy.pruning.hf import prune_hf_folder
    from superb_redundancy.pruning.plan import prune_by_objective
    from superb_redundancy.pruning.upstream import save_pruned

    if is_hf_model_dir(args.base):
        if args.artifact:
            raise UserError("--artifact writes s3prl-format checkpoints; for an HF base use --output-dir DIR")
        plan, _, path = prune_hf_folder(
            args.base, args.objective, args.amount, output_dir=args.output_dir, similarity=args.similarity,
            data=args.data, limit=args.limit, seed=args.seed, device=args.device, iterative=args.iterative,
            allow_first=args.allow_first, family=args.family, spec_path=args.output)
        num_layers = int(read_hf_config(args.base)["num_hidden_layers"])
        print(plan.describe())
        if args.output:
            print(f"prune spec (record of the plan): {Path(args.output)}")
        print(f"pruned model: {path}  ({num_layers - len(plan.drop_layers)} of {num_layers} layers; "
              f"use: -u hf_local -k {path}, or transformers.AutoModel.from_pretrained)")
        return 0
    if args.output_dir:
        raise UserError(f"--output-dir is for a Hugging Face save_pretrained --base; {args.base} is not one")
    amount = args.amount
    check_output_file(args.output, "--output")
    check_output_file(args.artifact, "--artifact")
    if args.similarity:
        report = SimilarityReport.load(args.similarity)
        settings = report.settings
    else:
        if not args.data:
            raise UserError("give --similarity REPORT (from `superb-redundancy similarity`) or --data AUDIO_DIR")
        settings = SimilaritySettings()
        report = None
    if args.iterative and not args.data:
        raise UserError("--iterative recomputes scores on the pruned model: it needs --data AUDIO_DIR")
    files = check_audio(list_audio(args.data, limit=args.limit, seed=args.seed)) if args.data else None
    if files is not None and (report is None or args.iterative):
        check_enough_clips(files, settings, args.data)
    if report is not None:
        _check_report_base(report, args.similarity, args.base, args.family)

    plan, spec = prune_by_objective(args.family, args.base, args.objective, amount, report=report, files=files,
                                    settings=settings, iterative=args.iterative, keep_first=not args.allow_first,
                                    device=args.device)
    print(plan.describe())
    if args.output:
        print(f"prune spec: {spec.to_yaml(args.output)}  (use: -u pruned_{args.family} -g {args.output})")
    if args.artifact:
        path = save_pruned(args.family, spec, args.artifact)
        print(f"pruned artifact: {path}  (use: -u pruned_{args.family}_local -k {path})")
    return 0


def _check_report_base(report, report_path: str, base: str, family_name: str) -> None:
    """Refuse a similarity report computed on another model than ``--base``: the report records the analysed
    checkpoint by content (``model_sha256``; older reports: the checkpoint path, hashed now)."""
    from superb_redundancy.core.files import checkpoint_sha256
    from superb_redundancy.models.checkpoints import load_base_checkpoint, resolve_base
    from superb_redundancy.models.families import get_family

    family = get_family(family_name)
    path = resolve_base(base, family, download=False)
    if path is None:
        print(f"note: {base} is not downloaded; {report_path} is not checked against it", file=sys.stderr)
        return
    checkpoint = load_base_checkpoint(path, family, mmap=True)
    layers = family.num_layers(checkpoint)
    del checkpoint
    if report.num_layers != layers:
        raise UserError(f"similarity report {report_path} is of a {report.num_layers}-layer model; --base {base} "
                         f"has {layers} layers")
    recorded = report.source.get("model_sha256")
    analysed = report.source.get("ckpt")
    if recorded is None and analysed and Path(analysed).is_file():
        recorded = checkpoint_sha256(analysed)  # a report from before model_sha256: its checkpoint as it is now
    if recorded is None:
        print(f"note: {report_path} does not record the model it was computed on; not checked against {base}",
              file=sys.stderr)
        return
    actual = checkpoint_sha256(path)
    if recorded != actual:
        raise UserError(f"similarity report {report_path} was computed on another model "
                         f"({analysed or report.source.get('upstream')}, model sha256 {recorded[:12]}) than --base "
                         f"{base} ({actual[:12]}); compute it on the base (similarity -u {family.local_hub_name} "
                         f"-k {base})")


def _amount(text: str) -> int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"must be a layer count (3) or a fraction of the layers (0.25), got {text!r}")


def _cmd_heal(args: argparse.Namespace) -> int:
    from superb_redundancy.distill.teacher_cache import step1_audio
    from superb_redundancy.pruning.heal.config import HealConfig
    from superb_redundancy.pruning.heal.record import describe
    from superb_redundancy.pruning.heal.training import heal

    # every input checked before the teacher runs: settings, output, audio here; model and teacher in heal()
    config = HealConfig(targets=args.targets, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seed, val_fraction=args.val_fraction, max_val_clips=args.max_val_clips)
    check_output_file(args.output, "--output")
    data = None if args.data is None else args.data[0] if len(args.data) == 1 else args.data
    files = step1_audio(data, corpus=args.corpus, task=args.task, split=args.split, limit=args.limit, seed=args.seed)
    result = heal(args.output, artifact=args.upstream_ckpt, family=args.family, spec=args.upstream_model_config,
                  base=args.base, teacher=args.teacher, audio=files, config=config, cache_dir=args.cache_dir,
                  dtype=args.dtype, device=args.device, resume=args.resume, progress=args.progress)
    family = result.upstream.family_name
    print(f"healed artifact: {result.path}  (use: -u pruned_{family}_local -k {result.path})")
    print(describe(result.record))
    return 0
