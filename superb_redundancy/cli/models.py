"""``superb-redundancy tiny-models``, ``pretrain``, ``export`` and ``upstreams``: the models themselves (tiny
random checkpoints, a small self-supervised one, an experiment's fine-tuned upstream, the registered names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from superb_redundancy.cli._common import add_aliased, add_progress_arg

__all__ = ["register", "add_pretrain_arguments"]


def register(sub) -> None:
    p = sub.add_parser("tiny-models", help="write tiny random checkpoints in s3prl's stock formats",
                       description="Write tiny_<family>.pt, a tiny random checkpoint in s3prl's stock format, for "
                                   "every family (only those missing).")
    add_aliased(p, "--output-dir", aliases=("--output",), default="work/models", metavar="DIR",
                help="folder for tiny_<family>.pt")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(func=_cmd_tiny_models)

    from superb_redundancy.models import pretrain

    p = sub.add_parser("pretrain", help="self-supervised wav2vec 2.0 pretraining of a small model (stock format)",
                       description=pretrain.__doc__.splitlines()[0])
    add_pretrain_arguments(p)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("export", help="the fine-tuned upstream of an s3prl -f experiment as an artifact; s3prl <-> "
                                      "Hugging Face conversion",
                       description="Export the upstream an s3prl experiment fine-tuned with -f as a file of the "
                                   "kind it was trained on, or convert between s3prl and Hugging Face formats.")
    p.add_argument("source", metavar="EXPDIR_OR_CKPT",
                   help="an s3prl experiment trained with -f (folder: dev-best.ckpt, else the last states-*.ckpt; or "
                        "the .ckpt), an s3prl-format wav2vec2/HuBERT checkpoint or pruned artifact, or a Hugging Face "
                        "save_pretrained folder")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--output", metavar="FILE", help="the s3prl-format file to write: a pruned/mimic artifact or a "
                                                      "stock checkpoint (from an experiment or a Hugging Face folder)")
    out.add_argument("--output-dir", metavar="DIR", help="the Hugging Face save_pretrained folder to write, with a "
                                                         "model card (from a wav2vec2/HuBERT checkpoint, artifact or "
                                                         "experiment)")
    # the older spelling: --format hf --output DIR (the folder then follows --output)
    p.add_argument("--format", choices=["s3prl", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--source", dest="artifact", metavar="PATH",
                   help="the artifact/checkpoint the experiment was trained on (its -k), if the recorded path moved")
    p.add_argument("--verify", action="store_true",
                   help="rebuild both models and print the largest difference of their hidden states")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir folder")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("upstreams", help="list the upstream variants registered into s3prl.hub",
                       description="List the upstream names superb-redundancy registers into s3prl.hub.")
    p.set_defaults(func=_cmd_upstreams)


def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    """``superb-redundancy pretrain``'s options; defaults from :class:`~superb_redundancy.models.pretrain.
    PretrainSettings` (a light module: no torch at import)."""
    from superb_redundancy.models.pretrain import PretrainSettings

    d = PretrainSettings()
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", metavar="ROOT", help="a corpus root laid out as ours (superb-redundancy corpus): "
                                                         "its training splits of all four tasks")
    source.add_argument("--data", nargs="+", metavar="DIR", help="folder(s) of .wav/.flac audio (every clip)")
    p.add_argument("--output", required=True, metavar="CKPT", help="the checkpoint to write (s3prl's stock wav2vec2 "
                                                                   "format); the record goes beside it as "
                                                                   "<name>.train.json")
    p.add_argument("--steps", type=int, default=d.steps, help="updates")
    p.add_argument("--stop-after", type=int, help="run only the first N updates of the --steps schedule (checks)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per update")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="warm-up updates (default 8%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    p.add_argument("--clip-norm", type=float, default=d.clip_norm, help="gradient-norm clip (0: none)")
    p.add_argument("--seed", type=int, default=d.seed, help="python, numpy, torch and data seed")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (losses depend on it)")
    p.add_argument("--crop-seconds", type=float, nargs=2, default=(d.crop_min, d.crop_max), metavar=("MIN", "MAX"),
                   help="random crop length per batch (capped by its shortest clip; shorter clips left out)")
    for name, help_ in (("layers", "transformer layers"), ("dim", "width"), ("ffn-dim", "feed-forward width"),
                        ("heads", "attention heads"), ("conv-dim", "CNN channels"),
                        ("conv-pos", "positional conv kernel"), ("conv-pos-groups", "positional conv groups"),
                        ("final-dim", "contrastive projection width"), ("latent-vars", "codebook entries per group"),
                        ("latent-groups", "codebook groups"), ("mask-length", "masked span length (frames)"),
                        ("num-negatives", "distractors per masked frame")):
        default = getattr(d, name.replace("-", "_"))
        p.add_argument(f"--{name}", type=int, default=default, help=help_)
    p.add_argument("--mask-prob", type=float, default=d.mask_prob, help="span-start probability")
    p.add_argument("--dropout", type=float, default=d.dropout, help="transformer dropout")
    p.add_argument("--feature-grad-mult", type=float, default=d.feature_grad_mult,
                   help="scale of the gradient reaching the CNN front end")
    p.add_argument("--post-ln", dest="layer_norm_first", action="store_false",
                   help="wav2vec 2.0 Base's post-LN transformer instead of a pre-LN one (Large's layer_norm_first); "
                        "deep post-LN stacks stay at chance far longer")
    add_progress_arg(p)



def _cmd_tiny_models(args: argparse.Namespace) -> int:
    from superb_redundancy.models.tiny import write_all

    for family, path in write_all(Path(args.output_dir), seed=args.seed).items():
        print(f"{family}: {path}")
    return 0


def settings_from_args(args: argparse.Namespace):
    """``pretrain``'s parsed arguments as the library's :class:`PretrainSettings`."""
    import dataclasses

    from superb_redundancy.models.pretraining.settings import PretrainSettings

    names = {f.name for f in dataclasses.fields(PretrainSettings)} - {"corpus", "data", "crop_min", "crop_max"}
    return PretrainSettings(corpus=args.corpus, data=tuple(args.data or ()), crop_min=args.crop_seconds[0],
                            crop_max=args.crop_seconds[1], **{n: getattr(args, n) for n in names})


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from superb_redundancy.models import pretrain

    result = pretrain.pretrain(settings_from_args(args), args.output, stop_after=args.stop_after,
                               progress=args.progress)
    record, log = result.record, result.record["log"]
    print(f"pretrained {record['steps_run']} step(s) on {record['data']['clips']} clips in "
          f"{record['wall_seconds']:.1f} s ({record['seconds_per_step']:.3f} s/step): loss {log['loss'][0]:.4f} -> "
          f"{log['loss'][-1]:.4f}, contrastive accuracy {log['accuracy'][0]:.3f} -> {log['accuracy'][-1]:.3f}")
    print(f"checkpoint: {result.checkpoint}  (use: -u wav2vec2_local -k {result.checkpoint})")
    print(f"record:     {result.record_path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from superb_redundancy.results.export import export

    # --output is a file (s3prl format), --output-dir a folder (Hugging Face); --format, the older way, decides alone
    format = args.format or ("hf" if args.output_dir else "s3prl")
    summary = export(args.source, args.output_dir or args.output, format=format, artifact=args.artifact,
                     verify=args.verify, overwrite=args.overwrite)
    if "step" in summary:  # an experiment's fine-tuned upstream
        print(f"fine-tuned upstream of {summary['checkpoint']} (step {summary['step']}; {summary['weights_changed']} "
              f"of {summary['weights']} weights changed by training) from {summary['source']}")
    print(f"exported: {summary['output']}  (use: -u {summary['load_as']} -k {summary['output']})")
    if "max_difference" in summary:
        print(f"verify: largest hidden-state difference {summary['max_difference']:.3g}")
    return 0


def _cmd_upstreams(args: argparse.Namespace) -> int:
    from superb_redundancy.hub import upstreams as registry
    from superb_redundancy.hub.install import install

    install()
    for name, entry in sorted(registry.UPSTREAMS.items()):
        print(f"{name:<28} {entry.description}")
    return 0
