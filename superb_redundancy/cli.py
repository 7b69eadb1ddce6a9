"""``superb-redundancy``: one command, one subcommand per concept. Parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["main"]


def _study_path(name: str) -> Path:
    """A study file: a path, or the name of one shipped in studies/ (e.g. embedded_default)."""
    path = Path(name)
    if path.is_file():
        return path
    from importlib import resources

    shipped = Path(str(resources.files("superb_redundancy.studies"))) / f"{path.stem}.yaml"
    if shipped.is_file():
        return shipped
    valid = sorted(p.stem for p in shipped.parent.glob("*.yaml"))
    raise ValueError(f"study file not found: {name} (shipped studies: {valid})")


def _cmd_study(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .study import StudyConfig, run_study, study_status
    from .study.runner import StudyChanged

    # the whole plan is checked before any run: every problem of the file, then what the disk can tell
    study, in_file = StudyConfig.load(_study_path(args.study))
    on_disk: list[str] = []
    if study is not None:
        if args.workdir:
            study.workdir = args.workdir
        if args.leaderboard:
            study.leaderboard = args.leaderboard
        if args.device:
            study.device = args.device
        on_disk = study.problems()
    problems = list(dict.fromkeys(in_file + on_disk))
    if problems and (args.action == "run" or in_file):  # status lists the runs of a well-formed file regardless
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        raise ValueError(f"{len(problems)} problem(s) in {args.study} (listed above); nothing was run")
    if args.action == "run":
        started = time.monotonic()
        try:
            states, frame = run_study(study, executor_override=args.executor, wait=getattr(args, "wait", False),
                                      rerun_changed=getattr(args, "rerun_changed", False))
        except StudyChanged as changed:
            for line in changed.lines:
                print(f"changed: {line}", file=sys.stderr)
            again = ("bash scripts/main.sh --rerun-changed" if args.command == "main"
                     else f"superb-redundancy study run {args.study} --rerun-changed")
            raise ValueError(f"{changed}; to rerun them and what depends on them: {again}; nothing was run") from None
        _print_study_summary(study, states, frame, time.monotonic() - started)
        return 1 if any(s["status"] in ("failed", "skipped") for s in states.values()) else 0
    rows = study_status(study)
    print(tabulate(rows, headers=["run", "status", "detail"], tablefmt="github"))
    for problem in problems:  # what the disk lacks: the runs can be listed, not run
        print(f"problem: {problem}", file=sys.stderr)
    return 0


def _print_study_summary(study, states: dict, frame, elapsed: float) -> None:
    from .leaderboard import format_tables

    counts: dict[str, int] = {}
    for state in states.values():
        counts[state["status"]] = counts.get(state["status"], 0) + 1
    print(f"\nstudy {study.name}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for run_id, state in states.items():
        if state["status"] in ("failed", "skipped"):
            print(f"  {state['status']}: {run_id}: {state.get('error') or state.get('reason')}", file=sys.stderr)
        elif (state.get("outputs") or {}).get("same_as"):
            print(f"  {run_id}: the same model as {state['outputs']['same_as']} (evaluated once)")
    work = Path(study.workdir)
    for figure in sorted(work.glob("runs/similarity/*/similarity.png")) + sorted(work.glob("runs/curves/*/*.png")):
        print(f"figure: {figure}")
    if frame is not None:
        from tabulate import tabulate

        from .leaderboard import overview

        print(format_tables(frame))
        print("\n## overview (one row per upstream variant)")
        print(tabulate(overview(frame), headers="keys", tablefmt="github", showindex=False))
        _print_paper_comparison(study, frame)
        print(f"\nleaderboard: {Path(study.leaderboard) / 'index.html'}")
    print(_timing_line(states) + f"; this call {elapsed:.0f} s (leaderboard included)")


def _print_paper_comparison(study, frame) -> None:
    """The paper's Table 1 beside the study's KS results, per upstream with a base (paper_comparison.md)."""
    from .paper_comparison import write_comparison

    task = study.curves.task if study.curves else "speech_commands"
    for up in study.upstreams:
        if not up.baseline or len(study.upstreams) > 1 and up is not study.upstreams[0]:
            continue  # one comparison: the first upstream's (the paper's table is one model's)
        text = write_comparison(frame, Path(study.workdir), up.name, Path(study.leaderboard) / "paper_comparison.md",
                                task)
        if text:
            print("\n" + text)


def _timing_line(states: dict) -> str:
    """Where the time went: the seconds of the study's runs by kind, as recorded (a second call reports the
    runs it skipped as they were made; its own time is the runner's)."""
    spent: dict[str, float] = {}
    for run_id, state in states.items():
        if state.get("status") == "done" and "started" in state and "finished" in state:
            kind = run_id.split("/")[0]
            spent[kind] = spent.get(kind, 0.0) + state["finished"] - state["started"]
    total = sum(spent.values())
    parts = ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in spent.items())
    return f"time by stage (run seconds, summed over parallel workers): {parts}; total {total:.0f} s"


def _cmd_main(args: argparse.Namespace) -> int:
    """The README's main command: the embedded default study (studies/embedded_default.yaml)."""
    args.action, args.study, args.executor = "run", args.study or "embedded_default", None
    return _cmd_study(args)


def _cmd_tiny_models(args: argparse.Namespace) -> int:
    from .tiny_models import write_all

    for family, path in write_all(Path(args.output), seed=args.seed).items():
        print(f"{family}: {path}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from . import pretrain

    return pretrain.run(args)


def _cmd_upstreams(args: argparse.Namespace) -> int:
    from . import registry

    registry.install()
    for name, entry in sorted(registry.UPSTREAMS.items()):
        print(f"{name:<28} {entry.description}")
    return 0


def _cmd_prune_spec(args: argparse.Namespace) -> int:
    from .bundles import get_family
    from .prune_spec import PruneSpec
    from .pruned_upstream import load_base_checkpoint, resolve_base, save_pruned

    _check_output_file(args.output, "--output")
    _check_output_file(args.artifact, "--artifact")
    spec = PruneSpec(base=args.base, drop_layers=args.drop, keep_layers=args.keep, compact=args.compact)
    # a spec that does not fit its base would only fail when loaded: check it against the base's layers now
    # (a hub name not downloaded yet is checked when --artifact downloads it, or when the spec is loaded)
    family = get_family(args.family)
    path = resolve_base(args.base, family, download=bool(args.artifact))
    if path is not None:
        checkpoint = load_base_checkpoint(path, family, mmap=True)
        try:
            spec.resolve(family.num_layers(checkpoint))
        except ValueError as error:
            raise ValueError(f"{error} (--base {path})") from None
        del checkpoint
    else:
        print(f"note: {args.base} is not downloaded; the spec is not checked against its layers", file=sys.stderr)
    if args.artifact:
        from . import registry

        registry.install()
        path = save_pruned(args.family, spec, args.artifact)
        print(f"pruned artifact: {path}  (use: -u pruned_{args.family}_local -k {path})")
    if args.output:
        path = spec.to_yaml(args.output)
        print(f"prune spec: {path}  (use: -u pruned_{args.family} -g {path})")
    return 0


def _check_max_seconds(value: float | None) -> None:
    from .features import MIN_SAMPLES, SAMPLE_RATE

    if value is not None and not value >= MIN_SAMPLES / SAMPLE_RATE:  # `not >=`: NaN fails too
        raise ValueError(f"--max-seconds must be at least {MIN_SAMPLES / SAMPLE_RATE:g} (one frame of the "
                         f"model), got {value:g}")


def _check_output_file(path: str | None, flag: str) -> None:
    """An output file's path must not be a folder, and its folder must be creatable: checked before the work."""
    if path and Path(path).expanduser().is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    if path:
        from .atomic import check_writable

        check_writable(Path(path).expanduser().parent, flag)


def _check_enough_clips(files: list, settings, data: str) -> None:
    """Mutual kNN needs k+1 samples; with a sample per clip, too few clips would fail after the forward pass."""
    if settings.pool != "frames" and len(files) < settings.k + 1:
        raise ValueError(f"{len(files)} usable clip(s) in {data}: mutual kNN with --k {settings.k} needs at least "
                         f"{settings.k + 1} (or --pool frames)")


#: options of the one-model analysis (blocks, nulls, baseline) a cross-model run has no use for: dest -> (flag,
#: default); the parser takes its defaults from here
_ONE_MODEL_ONLY = {"blocks": ("--blocks", 2), "include_input": ("--include-input", False),
                   "permutations": ("--permutations", 1000), "random_baseline": ("--no-random-baseline", True)}


def _check_against_args(args: argparse.Namespace) -> None:
    """--against_* only with --against; with it, no option of the one-model analysis (it would be ignored)."""
    if not args.against:
        given = [flag for flag in ("against_ckpt", "against_model_config") if getattr(args, flag)]
        if given:
            raise ValueError(f"--{given[0]} names the reference's checkpoint or config: give --against NAME too")
        return
    given = [flag for dest, (flag, default) in _ONE_MODEL_ONLY.items() if getattr(args, dest) != default]
    if given:
        raise ValueError(f"{given[0]} is for one model's blocks; with --against the command writes cross-model "
                         f"matrices only (no blocks, nulls or random-init baseline)")


def _similarity_settings(args: argparse.Namespace):
    from .analysis import SimilaritySettings

    return SimilaritySettings(pool=args.pool, averaging=args.averaging, batch_size=args.batch_size, k=args.k,
                              max_samples=args.max_samples, n_blocks=args.blocks, max_seconds=args.max_seconds,
                              include_input=args.include_input, permutations=args.permutations)


def _model_label(name: str, ckpt: Optional[str]) -> str:
    """How a model is named on the cross-model heat map: its upstream name, and its checkpoint file if any."""
    return f"{name} ({Path(ckpt).name})" if ckpt else name


def _cmd_cross_similarity(args: argparse.Namespace, settings, files: list) -> int:
    from .cross_similarity import cross_analyse
    from .files import checkpoint_sha256
    from .registry import build_upstream

    # both models load before the pass: a bad name or checkpoint of either fails in one line, before any work
    variant = build_upstream(args.upstream, args.upstream_ckpt, args.upstream_model_config)
    try:
        reference = build_upstream(args.against, args.against_ckpt, args.against_model_config)
    except (ValueError, FileNotFoundError) as error:  # say which of the two models it is
        raise ValueError(f"reference (--against {args.against}): {error}") from None
    names = (_model_label(args.upstream, args.upstream_ckpt), _model_label(args.against, args.against_ckpt))
    if names[0] == names[1]:
        names = (f"{names[0]} [rows]", f"{names[1]} [columns]")
    source = {"variant": {"upstream": args.upstream, "ckpt": args.upstream_ckpt,
                          "model_config": args.upstream_model_config,
                          "model_sha256": checkpoint_sha256(args.upstream_ckpt)},
              "reference": {"upstream": args.against, "ckpt": args.against_ckpt,
                            "model_config": args.against_model_config,
                            "model_sha256": checkpoint_sha256(args.against_ckpt)},
              "data": str(args.data), "clips": len(files)}
    report = cross_analyse(variant, reference, files, settings, device=args.device, names=names, source=source)
    paths = report.save(args.output, title=f"{names[0]} vs {names[1]} ({report.num_samples} samples, "
                                           f"pool={args.pool})")
    print(report.describe())
    print(f"matrices: {paths['json']}\nheatmap:  {paths['figure']}")
    return 0


def _cmd_similarity(args: argparse.Namespace) -> int:
    from .analysis import analyse, random_init_upstream
    from .atomic import check_output_dir
    from .features import check_audio, list_audio
    from .files import checkpoint_sha256
    from .registry import build_upstream

    # every input and the output checked before the model loads and the pass starts
    _check_max_seconds(args.max_seconds)
    _check_against_args(args)
    check_output_dir(args.output)
    settings = _similarity_settings(args)
    files = check_audio(list_audio(args.data, limit=args.limit, seed=args.seed))
    _check_enough_clips(files, settings, args.data)
    if args.against:
        return _cmd_cross_similarity(args, settings, files)
    upstream = build_upstream(args.upstream, args.upstream_ckpt, args.upstream_model_config)
    baseline = None
    if args.random_baseline:
        baseline = random_init_upstream(args.upstream, args.upstream_ckpt)
        if baseline is None:
            print(f"note: no random-initialisation baseline for {args.upstream} (stock <family>_local names only)",
                  file=sys.stderr)
    source = {"upstream": args.upstream, "ckpt": args.upstream_ckpt, "model_config": args.upstream_model_config,
              "data": str(args.data), "clips": len(files),
              # the analysed model by content: `prune --similarity` refuses the report for another base
              "model_sha256": checkpoint_sha256(args.upstream_ckpt)}
    report = analyse(upstream, files, settings, device=args.device, source=source, baseline_upstream=baseline)
    paths = report.save(args.output, title=f"{args.upstream} ({report.num_samples} samples, pool={args.pool})")
    print(f"layer similarity of {args.upstream} over {report.num_samples} samples; blocks:")
    print(report.describe_blocks())
    print(f"matrices: {paths['json']}\nheatmap:  {paths['figure']}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from .analysis import SimilarityReport, SimilaritySettings, analyse, plan_pruning
    from .features import check_audio, list_audio
    from .prune_spec import PruneSpec
    from .pruned_upstream import build_pruned, save_pruned
    from .hf_models import is_hf_model_dir, prune_hf_cli

    if is_hf_model_dir(args.base):
        return prune_hf_cli(args)
    if args.output_dir:
        raise ValueError(f"--output-dir is for a Hugging Face save_pretrained --base; {args.base} is not one")
    amount = args.amount
    _check_output_file(args.output, "--output")
    _check_output_file(args.artifact, "--artifact")
    if args.similarity:
        report = SimilarityReport.load(args.similarity)
        settings = report.settings
    else:
        if not args.data:
            raise ValueError("give --similarity REPORT (from `superb-redundancy similarity`) or --data AUDIO_DIR")
        settings = SimilaritySettings()
        report = None
    if args.iterative and not args.data:
        raise ValueError("--iterative recomputes scores on the pruned model: it needs --data AUDIO_DIR")
    files = check_audio(list_audio(args.data, limit=args.limit, seed=args.seed)) if args.data else None
    if files is not None and (report is None or args.iterative):
        _check_enough_clips(files, settings, args.data)
    if report is not None:
        _check_report_base(report, args.similarity, args.base, args.family)

    def analyse_with(dropped: list[int]) -> SimilarityReport:
        model = build_pruned(args.family, PruneSpec(base=args.base, drop_layers=dropped))
        return analyse(model, files, settings, device=args.device)

    if report is None:
        report = analyse_with([])
    plan = plan_pruning(report, args.objective, amount, keep_first=not args.allow_first,
                        reanalyse=analyse_with if args.iterative else None)
    print(plan.describe())
    spec = PruneSpec(base=args.base, drop_layers=plan.drop_layers,
                     notes={"objective": plan.objective, "iterative": plan.iterative, "amount": args.amount,
                            "order": plan.order, "scores": plan.scores})
    if args.output:
        print(f"prune spec: {spec.to_yaml(args.output)}  (use: -u pruned_{args.family} -g {args.output})")
    if args.artifact:
        path = save_pruned(args.family, spec, args.artifact)
        print(f"pruned artifact: {path}  (use: -u pruned_{args.family}_local -k {path})")
    return 0


def _check_report_base(report, report_path: str, base: str, family_name: str) -> None:
    """Refuse a similarity report computed on another model than ``--base``: the report records the analysed
    checkpoint by content (``model_sha256``; older reports: the checkpoint path, hashed now)."""
    from .bundles import get_family
    from .files import checkpoint_sha256
    from .pruned_upstream import load_base_checkpoint, resolve_base

    family = get_family(family_name)
    path = resolve_base(base, family, download=False)
    if path is None:
        print(f"note: {base} is not downloaded; {report_path} is not checked against it", file=sys.stderr)
        return
    checkpoint = load_base_checkpoint(path, family, mmap=True)
    layers = family.num_layers(checkpoint)
    del checkpoint
    if report.num_layers != layers:
        raise ValueError(f"similarity report {report_path} is of a {report.num_layers}-layer model; --base {base} "
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
        raise ValueError(f"similarity report {report_path} was computed on another model "
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


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    import warnings

    from .harvest import harvest, load_records
    from .leaderboard import build, format_tables, write_leaderboard

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.experiments:
            harvest(args.experiments, args.records)
        records = load_records(args.records)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if not records:
        raise ValueError(f"no run records in {args.records}: pass --experiments DIR with evaluated s3prl runs")
    frame, timing = build(records, repeats=args.repeats, device=args.device, threads=args.threads)
    written = write_leaderboard(frame, args.output, timing=timing)
    print(format_tables(frame))
    print(f"\nleaderboard: {written['index.html']}")
    return 0


def _grid(args: argparse.Namespace) -> Optional[str]:
    return "paper" if args.paper_grid else "tiny" if args.tiny_grid else None


def _cmd_mimic_train(args: argparse.Namespace) -> int:
    from .mimic import describe_artifact, select_configs
    from .mimic_train import step1_audio, train_grid

    configs = select_configs(args.config, grid=_grid(args), layer_i=args.layer_i, span=args.span)
    files = step1_audio(args.audio, corpus=args.corpus, task=args.task, split=args.split, limit=args.limit,
                        seed=args.seed)
    paths = train_grid(args.teacher, files, configs, args.output_dir, cache_dir=args.cache_dir, family=args.family,
                       dtype=args.dtype, device=args.device, resume=args.resume, progress=not args.quiet,
                       eval_head=args.eval_head, select_by=args.select_by)
    print(f"{len(paths)} mimicker(s) from {len(files)} clips (use: -u mimic_local -k ARTIFACT; -f adapts the layers):")
    for path in paths:
        print(describe_artifact(path))
    return 0


def _cmd_mimic_init(args: argparse.Namespace) -> int:
    from .mimic import describe_artifact, select_configs
    from .mimic_train import init_grid

    configs = select_configs(args.config, grid=_grid(args), baselines=True)
    paths = init_grid(args.teacher, configs, args.output_dir, family=args.family)
    print(f"{len(paths)} baseline(s), no step 1 (use: -u mimic_local -k ARTIFACT; -f trains the random layers):")
    for path in paths:
        print(describe_artifact(path))
    return 0


def _add_clip_source(p: argparse.ArgumentParser, files_flag: str, files_help: str) -> None:
    """The clips a trainer reads: audio files/folders, or a corpus split (with its task) and a seeded subset."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(files_flag, nargs="+", help=files_help)
    source.add_argument("--corpus", help="a SUPERB corpus root (with --task and --split)")
    p.add_argument("--task", choices=["speech_commands", "voxceleb1", "emotion", "asr"], help="the corpus' task")
    p.add_argument("--split", default="train", choices=["train", "dev", "test"], help="the corpus split (train)")
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded)")


def _add_mimic_args(p: argparse.ArgumentParser, grids: str, tiny: str) -> None:
    p.add_argument("--teacher", required=True, help="stock checkpoint path (or an s3prl hub name with --family)")
    p.add_argument("--family", choices=["wav2vec2", "hubert", "wavlm"])
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", nargs="+", default=[], help="MimicConfig YAML file(s) (n_layers: 0 = classifier only)")
    group.add_argument("--paper-grid", action="store_true", help=f"the paper's {grids}")
    group.add_argument("--tiny-grid", action="store_true", help=f"CPU-sized: {tiny}")
    p.add_argument("--output-dir", required=True, help="where the artifacts go (<config name>.pt)")


def _add_upstream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-u", "--upstream", required=True, help="any s3prl hub name, ours included")
    p.add_argument("-k", "--upstream_ckpt", help="checkpoint path (for _local names)")
    p.add_argument("-g", "--upstream_model_config", help="model config (our pruned_*: a prune spec)")


def _add_data_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data", required=required, help="folder of .wav/.flac audio (searched recursively)")
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def _cmd_heal(args: argparse.Namespace) -> int:
    from .heal import HealConfig, describe, heal
    from .mimic_train import step1_audio

    # every input checked before the teacher runs: settings, output, audio here; model and teacher in heal()
    config = HealConfig(targets=args.targets, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seed, val_fraction=args.val_fraction, max_val_clips=args.max_val_clips)
    _check_output_file(args.output, "--output")
    data = None if args.data is None else args.data[0] if len(args.data) == 1 else args.data
    files = step1_audio(data, corpus=args.corpus, task=args.task, split=args.split, limit=args.limit, seed=args.seed)
    result = heal(args.output, artifact=args.upstream_ckpt, family=args.family, spec=args.upstream_model_config,
                  base=args.base, teacher=args.teacher, audio=files, config=config, cache_dir=args.cache_dir,
                  dtype=args.dtype, device=args.device, resume=args.resume, progress=not args.quiet)
    family = result.upstream.family_name
    print(f"healed artifact: {result.path}  (use: -u pruned_{family}_local -k {result.path})")
    print(describe(result.record))
    return 0


def _one_line_errors(parser: argparse.ArgumentParser, command: str) -> None:
    """argparse's refusals of this subcommand as one line (no usage block), like the command's own errors."""
    def error(message: str):
        print(f"superb-redundancy {command}: error: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    summary = export(args.source, args.output, format=args.format, artifact=args.artifact, verify=args.verify,
                     overwrite=args.overwrite)
    if "step" in summary:  # an experiment's fine-tuned upstream
        print(f"fine-tuned upstream of {summary['checkpoint']} (step {summary['step']}; {summary['weights_changed']} "
              f"of {summary['weights']} weights changed by training) from {summary['source']}")
    print(f"exported: {summary['output']}  (use: -u {summary['load_as']} -k {summary['output']})")
    if "max_difference" in summary:
        print(f"verify: largest hidden-state difference {summary['max_difference']:.3g}")
    return 0


def _cmd_overrides(args: argparse.Namespace) -> int:
    from . import tasks

    print(tasks.format_overrides(tasks.data_overrides(args.downstream, args.root)))
    return 0


#: subcommands whose arguments belong to another program: passed on untouched
PASSTHROUGH = {"run-downstream": "superb_redundancy.downstream_runner"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="superb-redundancy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("main", help="the embedded default study: synthetic corpus, tiny models, CPU")
    p.add_argument("--study", help="another study file instead of studies/embedded_default.yaml")
    p.add_argument("--workdir", help="override the study's workdir")
    p.add_argument("--leaderboard", help="override where the leaderboard goes")
    p.add_argument("--device", help="override the study's device (cpu, cuda, cuda:N)")
    p.add_argument("--wait", action="store_true", help="wait while another runner holds the workdir")
    p.add_argument("--rerun-changed", action="store_true",
                   help="rerun the done runs whose parameters changed, and what depends on them")
    p.set_defaults(func=_cmd_main)

    p = sub.add_parser("study", help="run a study file (resumable; local or Slurm), or show its status")
    p.add_argument("action", choices=["run", "status"])
    p.add_argument("study", help="a study YAML, or the name of one in studies/ (embedded_default, "
                                 "beyond_the_paper, paper, ks_w2v2_8l)")
    p.add_argument("--executor", choices=["local", "slurm"], help="override the study's executor.kind")
    p.add_argument("--workdir", help="override the study's workdir")
    p.add_argument("--leaderboard", help="override where the leaderboard goes")
    p.add_argument("--device", help="override the study's device (cpu, cuda, cuda:N)")
    p.add_argument("--wait", action="store_true", help="run: wait while another runner holds the workdir")
    p.add_argument("--rerun-changed", action="store_true",
                   help="run: rerun the done runs whose parameters changed, and what depends on them")
    p.set_defaults(func=_cmd_study)

    from .corpus import __main__ as corpus_cli

    p = sub.add_parser("corpus", help="generate the synthetic SUPERB corpus", description=corpus_cli.DESCRIPTION)
    corpus_cli.add_arguments(p)
    p.set_defaults(func=lambda args, parser=p: corpus_cli.run(args, parser))

    p = sub.add_parser("overrides", help="print the -o string pointing a task's config at a corpus root")
    p.add_argument("-d", "--downstream", required=True, help="the s3prl task (-d), e.g. emotion")
    p.add_argument("--root", default="work/study/data", help="the corpus root (default: the main job's corpus)")
    p.set_defaults(func=_cmd_overrides)

    p = sub.add_parser("tiny-models", help="write tiny random checkpoints in s3prl's stock formats")
    p.add_argument("--output", default="work/models")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_tiny_models)

    from . import pretrain as pretrain_cli

    p = sub.add_parser("pretrain", help="self-supervised wav2vec 2.0 pretraining of a small model (stock format)",
                       description=pretrain_cli.__doc__.splitlines()[0])
    pretrain_cli.add_arguments(p)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("prune-spec", help="write a prune spec (-g) and/or a pruned artifact (-k) by layer indices")
    p.add_argument("--family", required=True, choices=["wav2vec2", "hubert", "wavlm", "data2vec"])
    p.add_argument("--base", required=True, help="s3prl hub name of the family, or a checkpoint path")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--drop", type=int, nargs="+", help="0-based transformer layers to drop")
    group.add_argument("--keep", type=int, nargs="+", help="0-based transformer layers to keep")
    p.add_argument("--compact", action="store_true", help="hidden_states only of kept layers")
    p.add_argument("--output", help="prune spec YAML to write")
    p.add_argument("--artifact", help="self-describing pruned checkpoint to write")
    p.set_defaults(func=_cmd_prune_spec)

    p = sub.add_parser("similarity", help="layer similarity (cosine, CKA, mutual kNN) with blocks and a heatmap")
    _add_upstream_args(p)
    p.add_argument("--against", metavar="NAME",
                   help="a reference upstream (e.g. the teacher of a pruned or mimicking -u): instead of blocks, the "
                        "matrices of every -u hidden state (rows) against every reference hidden state (columns) on "
                        "the same clips -> cross_similarity.json/.png")
    p.add_argument("--against_ckpt", metavar="CKPT", help="the reference's checkpoint path (as -k)")
    p.add_argument("--against_model_config", metavar="CONFIG", help="the reference's model config (as -g)")
    _add_data_args(p, required=True)
    p.add_argument("--pool", default="mean", choices=["mean", "flatten", "frames"],
                   help="clip -> sample: mean over time (default), flatten (paper code; equal lengths), frames")
    p.add_argument("--averaging", default="batch", choices=["batch", "whole"],
                   help="batch: per batch of --batch-size samples, averaged (the paper); whole: the whole set once")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--k", type=int, default=8, help="neighbours for mutual kNN (default 8)")
    p.add_argument("--max-samples", type=int, default=4096, help="sample cap for --averaging whole")
    p.add_argument("--max-seconds", type=float, help="crop clips to this length")
    p.add_argument("--blocks", type=int, default=_ONE_MODEL_ONLY["blocks"][1],
                   help="number of contiguous blocks to detect")
    p.add_argument("--include-input", action="store_true",
                   help="blocks and heat maps over all L+1 hidden states (default: the L transformer-layer outputs, "
                        "as the paper); the saved matrices always hold all L+1")
    p.add_argument("--permutations", type=int, default=_ONE_MODEL_ONLY["permutations"][1],
                   help="permutation-null draws per metric (0: none)")
    p.add_argument("--no-random-baseline", dest="random_baseline", action="store_false",
                   help="skip the same architecture at random initialisation (a second pass over the clips)")
    p.add_argument("--output", required=True, help="folder for similarity.json and similarity.png")
    p.set_defaults(func=_cmd_similarity)

    p = sub.add_parser("prune", help="pruning order by an objective; writes the prune spec and/or artifact")
    p.add_argument("--family", required=True, choices=["wav2vec2", "hubert", "wavlm", "data2vec"])
    p.add_argument("--base", required=True,
                   help="s3prl hub name of the family, a checkpoint path, or a Hugging Face save_pretrained folder")
    p.add_argument("--objective", required=True, choices=sorted(__import__("superb_redundancy.pruning_order",
                                                                           fromlist=["OBJECTIVES"]).OBJECTIVES))
    p.add_argument("--amount", required=True, type=_amount, help="layers to drop: a count (3) or a fraction of L (0.25)")
    p.add_argument("--similarity", help="similarity.json of the base (else computed from --data)")
    _add_data_args(p, required=False)
    p.add_argument("--iterative", action="store_true", help="recompute scores after each removal")
    p.add_argument("--allow-first", action="store_true", help="allow pruning layer 0 (never, by default)")
    p.add_argument("--output", help="prune spec YAML to write")
    p.add_argument("--artifact", help="pruned artifact to write")
    p.add_argument("--output-dir", help="Hugging Face --base: the pruned save_pretrained folder to write")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("heal", help="heal a pruned model: distil its kept layers towards the unpruned teacher")
    _one_line_errors(p, "heal")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("-k", "--upstream_ckpt", metavar="ARTIFACT", help="pruned artifact to heal (prune --artifact)")
    model.add_argument("-g", "--upstream_model_config", metavar="SPEC",
                       help="prune spec to heal (with --family; base: from the spec or --base)")
    p.add_argument("--family", choices=["wav2vec2", "hubert", "wavlm"], help="with -g (checked against -k)")
    p.add_argument("--base", help="with -g: the base checkpoint the spec prunes (default: the spec's base:)")
    p.add_argument("--teacher", help="stock checkpoint (or hub name) to distil from (default: the pruned model's "
                                     "base; its CNN front end must be the pruned model's)")
    p.add_argument("--targets", choices=["final", "mapped"], default="final",
                   help="final: the teacher's last hidden state; mapped: also, for each kept layer l, the teacher's "
                        "layer l output (default: final)")
    _add_clip_source(p, "--data", "folder(s) (recursive *.wav/*.flac) or audio files, 16 kHz")
    p.add_argument("--seed", type=int, default=0, help="seed of --limit, the validation split and the shuffling")
    p.add_argument("--epochs", type=int, default=10, help="0: the unhealed model, with its loss recorded (10)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (1e-4: the layers start trained)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step (16)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out clips for validation (0.1)")
    p.add_argument("--max-val-clips", type=int, default=1024, help="at most this many validation clips (1024)")
    p.add_argument("--cache-dir", help="teacher cache (default: OUTPUT_STEM.teacher_cache beside --output; a mimic "
                                       "train cache of the same teacher and audio is reused)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="cache dtype")
    p.add_argument("--device", help="cuda if available, else cpu")
    p.add_argument("--resume", action="store_true", help="continue an interrupted healing (<output>.state.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--output", required=True, help="the healed artifact to write (for -u pruned_<family>_local -k)")
    p.set_defaults(func=_cmd_heal)

    p = sub.add_parser("leaderboard", help="harvest s3prl experiments into records; tables, figures, HTML page")
    p.add_argument("--experiments", nargs="*", default=[], help="folders holding s3prl expdirs to harvest")
    p.add_argument("--records", default="leaderboard/records", help="run records (JSON), read and written")
    p.add_argument("--output", default="leaderboard", help="where tables, figures and index.html go")
    p.add_argument("--repeats", type=int, default=30,
                   help="latency rounds (each times every variant once, interleaved); one timing averages 1 pass, "
                        "doubled up to 32 until variants whose MACs differ by more than 10%% have separate IQRs")
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing (default 1: steadier)")
    p.add_argument("--device", default="cpu", help="where variants are timed: cpu (default), cuda, cuda:N")
    p.set_defaults(func=_cmd_leaderboard)

    p = sub.add_parser("mimic", help="mimicking networks: train (step 1, teacher cache) or init (baselines)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("train", help="step 1: cache the teacher once, train each mimicker config on the cache")
    _add_mimic_args(a, "12 mimickers (L/T x N 1,2 x z 32,768,4096)", "4 mimickers (L/T x N 1,2, z 32)")
    _add_clip_source(a, "--audio", "folder(s) (recursive *.wav/*.flac) or audio files")
    a.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    a.add_argument("--layer-i", type=int, help="m_f's target layer of the grid's 2-layer mimickers")
    a.add_argument("--span", type=int, nargs=2, metavar=("I", "J"), help="block replacement: replace transformer "
                   "layers I..J only (0-based, inclusive), keeping the teacher's others frozen (default: all)")
    a.add_argument("--eval-head", metavar="EXPDIR", help="an s3prl experiment trained on the teacher: the "
                   "mimicker's accuracy through its head on the dev split after every epoch")
    a.add_argument("--select-by", choices=["mse", "acc"], default="mse",
                   help="keep the weights of the best validation MSE (default) or the best --eval-head accuracy")
    a.add_argument("--cache-dir", help="teacher cache (default: OUTPUT_DIR/teacher_cache; reused when it matches)")
    a.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="cache dtype")
    a.add_argument("--device", help="cuda if available, else cpu")
    a.add_argument("--resume", action="store_true", help="continue interrupted trainings (<artifact>.state.pt)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=_cmd_mimic_train)
    a = actions.add_parser("init", help="baselines without step 1: non-mimicker (random layers) or classifier only")
    _add_mimic_args(a, "baselines (non-mimicker L/T x z 32,768,4096, N 1; classifier only)",
                    "3 baselines (non-mimicker L/T, N 1, z 32; classifier only)")
    a.set_defaults(func=_cmd_mimic_init)

    from . import profile_cli, pruning_curves

    p = sub.add_parser("profile", help="parameters, MACs and latency of any upstream or a real-size architecture")
    profile_cli.add_arguments(p)
    p.set_defaults(func=profile_cli.run)

    p = sub.add_parser("curves", help="pruning curves without retraining from a trained downstream experiment")
    pruning_curves.add_arguments(p)
    p.set_defaults(func=pruning_curves.run)

    p = sub.add_parser("export", help="the fine-tuned upstream of an s3prl -f experiment as an artifact; s3prl <-> "
                                      "Hugging Face conversion")
    _one_line_errors(p, "export")
    p.add_argument("source", metavar="EXPDIR_OR_CKPT",
                   help="an s3prl experiment trained with -f (folder: dev-best.ckpt, else the last states-*.ckpt; or "
                        "the .ckpt), an s3prl-format wav2vec2/HuBERT checkpoint or pruned artifact, or a Hugging Face "
                        "save_pretrained folder")
    p.add_argument("--output", required=True, help="the file (s3prl format) or folder (--format hf) to write")
    p.add_argument("--format", choices=["s3prl", "hf"],
                   help="s3prl: a pruned/mimic artifact or stock checkpoint (default for experiments and HF folders); "
                        "hf: a save_pretrained folder with a model card (default for s3prl-format checkpoints)")
    p.add_argument("--source", dest="artifact", metavar="PATH",
                   help="the artifact/checkpoint the experiment was trained on, if its recorded -k path moved")
    p.add_argument("--verify", action="store_true",
                   help="rebuild both models and print the largest difference of their hidden states")
    p.add_argument("--overwrite", action="store_true", help="--format hf: replace a non-empty --output folder")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("upstreams", help="list the upstream variants registered into s3prl.hub")
    p.set_defaults(func=_cmd_upstreams)

    sub.add_parser("run-downstream", help="s3prl's run_downstream.py with our variants (its arguments)",
                   add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    import importlib

    from . import quiet

    argv = list(sys.argv[1:] if argv is None else argv)
    quiet.silence_known_noise()
    if argv and argv[0] in PASSTHROUGH:
        return int(importlib.import_module(PASSTHROUGH[argv[0]]).main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is _cmd_prune_spec and not (args.output or args.artifact):
        parser.error("prune-spec: give --output SPEC.yaml and/or --artifact PATH.pt")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:  # bad input: one line, no traceback
        print(f"superb-redundancy {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
