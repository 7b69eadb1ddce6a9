"""Mimicker artifacts: ONE self-describing file per mimicker (config, teacher record, front-end and mimicking
weights, training record), written atomically (:func:`save_artifact`), checked on reading (:func:`read_artifact`)
and rebuilt into an upstream (:func:`load_mimic_artifact`); :func:`describe_artifact` says what one is in a line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from superb_redundancy.core import files as atomic
from superb_redundancy.core.files import checkpoint_sha256, load_checkpoint, sha256_file
from superb_redundancy.core.variant import (ARTIFACT_KEY, DESCRIPTION_KEY, MIMIC_ARTIFACT_KIND as ARTIFACT_KIND,
                                            MimicSetup, VariantDescription, VariantKind)
from superb_redundancy.mimic.config import MimicConfig, MimicError
from superb_redundancy.mimic.encoder import build_teacher_encoder
from superb_redundancy.distill.frontend import build_frontend, json_plain
from superb_redundancy.mimic.modules import Mimicker, mimicker_parameter_count
from superb_redundancy.mimic.upstream import MimicUpstream, upstream_options
from superb_redundancy.models.checkpoints import CheckpointError, resolve_base
from superb_redundancy.models.families import family_of_checkpoint, get_family

__all__ = ["ARTIFACT_KEY", "ARTIFACT_KIND", "ARTIFACT_VERSION", "save_artifact", "read_artifact", "describe_artifact",
           "mimic_description", "load_mimic_artifact", "hub_entry", "hub_entry_local"]

ARTIFACT_VERSION = 1


def save_artifact(output: str | os.PathLike, config: MimicConfig, teacher: dict, frontend: dict,
                  mimicker: dict, targets: Sequence[int], training: Optional[dict] = None,
                  encoder: Optional[dict] = None) -> Path:
    """Write ONE self-describing mimicker file (plain dicts/lists/tensors/str/numbers), atomically.

    Keys: ``superb_redundancy`` ({kind: "mimicker", version, variant: :func:`mimic_description`}), ``config`` (:class:`MimicConfig` as a dict),
    ``targets`` (teacher layer each mimicking layer mimics), ``teacher`` (family, path, sha256, num_layers,
    hidden_size, checkpoint_config: the stock checkpoint's config entries), ``frontend`` (CNN + layer_norm +
    post_extract_proj weights), ``mimicker`` (weights), ``training`` (``training``: "mimicking" (step 1) or
    "none" (a baseline: random layers, or none at all); losses per epoch, best epoch, ...),
    ``parameters`` (frontend / mimicker / teacher_encoder / total counts: the total counts the kept teacher
    layers of a span). A partial span also has ``encoder``: the kept teacher weights
    (:func:`~superb_redundancy.mimic.encoder.encoder_state`); a whole-stack artifact has none.
    """
    d = int(teacher["hidden_size"])
    partial = not config.whole_stack(int(teacher["num_layers"]))
    if partial and not encoder:
        raise MimicError(f"mimic config {config.name()}: span {config.span} keeps teacher layers; pass their "
                         "weights (encoder_state) to save_artifact")
    n_mimicker = mimicker_parameter_count(config.kind, config.n_layers, d, config.z, config.nhead)
    n_frontend = sum(int(v.numel()) for k, v in frontend.items() if not _is_buffer_key(k))
    n_encoder = sum(int(v.numel()) for k, v in (encoder or {}).items() if not _is_buffer_key(k)) if partial else 0
    artifact = {
        ARTIFACT_KEY: {"kind": ARTIFACT_KIND, "version": ARTIFACT_VERSION,
                       DESCRIPTION_KEY: mimic_description(config.to_dict(), teacher, training).to_dict()},
        "config": config.to_dict(),
        "targets": [int(t) for t in targets],
        "teacher": json_plain(teacher),
        "frontend": {k: v.detach().cpu().contiguous() for k, v in frontend.items()},
        "mimicker": {k: v.detach().cpu().contiguous() for k, v in mimicker.items()},
        "training": json_plain(training or {}),
        "parameters": {"frontend": n_frontend, "mimicker": n_mimicker, "total": n_frontend + n_mimicker},
    }
    if partial:
        artifact["encoder"] = {k: v.detach().cpu().contiguous() for k, v in encoder.items()}
        artifact["parameters"].update(teacher_encoder=n_encoder, total=n_frontend + n_mimicker + n_encoder)
    return atomic.torch_save(artifact, output)


def mimic_description(config: dict, teacher: dict, training: Optional[dict]) -> VariantDescription:
    """The variant a mimicker artifact is, from its config, teacher record and training record (step 1 or none,
    which baseline): its base is the teacher, by content."""
    training = training or {}
    return VariantDescription(
        kind=VariantKind.MIMIC, family=teacher.get("family"),
        base=None if teacher.get("path") is None else str(teacher["path"]),
        base_sha256=teacher.get("content_sha256") or teacher.get("sha256"),
        mimic=MimicSetup(kind=config["kind"], n_layers=int(config["n_layers"]), z=config.get("z"),
                         span=config.get("span"), training=training.get("training"),
                         baseline=training.get("baseline")))


def _is_buffer_key(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def read_artifact(path: str | os.PathLike) -> dict:
    """Load and check a mimicker artifact (weights_only); every problem is one :class:`MimicError` line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MimicError(f"mimicker artifact not found: {path}")
    artifact = load_checkpoint(path, "mimicker artifact", MimicError)
    meta = artifact.get(ARTIFACT_KEY) if isinstance(artifact, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != ARTIFACT_KIND:
        what = "a file without a superb_redundancy mimicker header"
        if isinstance(artifact, dict):
            family = family_of_checkpoint(artifact)
            if isinstance(meta, dict):
                what = f"a superb_redundancy {meta.get('kind')!r} artifact"
            elif family is not None:
                what = f"a stock {family.name} checkpoint (a teacher, not a mimicker)"
        raise MimicError(
            f"{path} is not a mimicker artifact: it is {what}; write one with "
            f"superb_redundancy.mimic.train.train_mimicker (or a baseline with init_artifact)"
        )
    if meta.get("version") != ARTIFACT_VERSION:
        raise MimicError(f"{path}: mimicker artifact version {meta.get('version')!r}; this code reads {ARTIFACT_VERSION}")
    for key in ("config", "targets", "teacher", "frontend", "mimicker"):
        if key not in artifact:
            raise MimicError(f"corrupt mimicker artifact {path}: missing {key!r}")
    return artifact


def describe_artifact(path: str | os.PathLike) -> str:
    """One line: what an artifact is, its parameter counts, and how step 1 went (best loss, epoch)."""
    path = Path(path)
    artifact = read_artifact(path)
    config = MimicConfig.from_dict(artifact["config"], source=str(path))
    params = artifact.get("parameters", {})
    what = ("classifier only (no mimicking layer)" if config.classifier_only else
            f"{config.kind} N={config.n_layers} z={config.z}, targets {artifact['targets']}")
    if config.span is not None:
        what += f", replacing layers {config.span[0]}..{config.span[1]} of {artifact['teacher'].get('num_layers')}"
    counts = f"{params.get('mimicker', 0):,} mimicker + {params.get('frontend', 0):,} front-end"
    if params.get("teacher_encoder"):
        counts += f" + {params['teacher_encoder']:,} kept teacher-encoder"
    counts += " parameters"
    training = artifact.get("training") or {}
    last = max((h.get("epoch", 0) for h in training.get("history", [])), default=0)
    if training.get("training") == "none":
        step1 = "step 1: none" + ("" if config.classifier_only else f" (random layers, seed {config.seed})")
    elif training.get("selected_by") == "head accuracy" and training.get("best_accuracy") is not None:
        step1 = (f"step 1: best head accuracy {training['best_accuracy']:.4g} "
                 f"({(training.get('eval_head') or {}).get('split', 'dev')}) at epoch {training.get('best_epoch')}/{last}")
    elif training.get("best_loss") is not None:
        which = "val" if training.get("selected_by") == "validation loss" else "train"
        step1 = f"step 1: best {which} loss {training['best_loss']:.5g} at epoch {training.get('best_epoch')}/{last}"
    else:
        step1 = "step 1: no record"
    return f"{path}: {what}; {counts}; {step1}"


def _check_teacher(artifact: dict, path: Path, teacher: Optional[str], teacher_sha256: Optional[str],
                   family: Optional[str]) -> None:
    record = artifact["teacher"]
    if family is not None and family != record.get("family"):
        raise MimicError(
            f"{path} was distilled from a {record.get('family')} teacher, not {family}"
        )
    expected, label = None, ""
    if teacher:
        teacher_path = Path(str(teacher)).expanduser()
        if not teacher_path.is_file():
            try:
                teacher_path = resolve_base(str(teacher), get_family(record["family"]))
            except CheckpointError as error:
                raise MimicError(f"cannot check {path} against teacher {teacher!r}: {error}") from None
        label = str(teacher_path)
        # by content where the artifact records it; artifacts from before content_sha256, by the file's bytes
        expected = (checkpoint_sha256(teacher_path, "teacher checkpoint", MimicError) if record.get("content_sha256")
                    else sha256_file(teacher_path))
    elif teacher_sha256:
        expected, label = str(teacher_sha256).lower(), "the given teacher"
    if expected is not None and expected not in (record.get("content_sha256"), record.get("sha256")):
        raise MimicError(
            f"{path} was distilled from teacher {record.get('path')} "
            f"(sha256 {str(record.get('content_sha256') or record.get('sha256'))[:12]}...), "
            f"not from {label} (sha256 {expected[:12]}...)"
        )


def load_mimic_artifact(path: str | os.PathLike, teacher: Optional[str] = None,
                        teacher_sha256: Optional[str] = None, family: Optional[str] = None,
                        compact: Optional[bool] = None) -> MimicUpstream:
    """Rebuild the upstream of a saved artifact; ``teacher`` (path or hub name) / ``teacher_sha256`` check it;
    ``compact`` overrides the config's hidden-state layout."""
    path = Path(path).expanduser()
    artifact = read_artifact(path)
    config = MimicConfig.from_dict(artifact["config"], source=str(path))
    record = artifact["teacher"]
    try:
        num_layers, d = int(record["num_layers"]), int(record["hidden_size"])
        family_name = record["family"]
        get_family(family_name)
    except (KeyError, TypeError, ValueError) as error:
        raise MimicError(f"corrupt mimicker artifact {path}: bad teacher record ({error})") from None
    try:
        targets = config.resolve_targets(num_layers)
        partial = not config.whole_stack(num_layers)
    except MimicError as error:
        raise MimicError(f"{path}: {error}") from None
    if [int(t) for t in artifact["targets"]] != targets:
        raise MimicError(f"corrupt mimicker artifact {path}: targets {artifact['targets']} do not match its config ({targets})")
    try:
        config.check_dims(d)
    except MimicError as error:
        raise MimicError(f"{path}: {error}") from None
    _check_teacher(artifact, path, teacher, teacher_sha256, family)
    frontend = build_frontend(family_name, record["checkpoint_config"], artifact["frontend"])
    mimicker = Mimicker.from_config(config, d)
    try:
        mimicker.load_state_dict(artifact["mimicker"], strict=True)
    except RuntimeError as error:
        raise MimicError(f"corrupt mimicker artifact {path}: weights do not fit its config "
                         f"({str(error).splitlines()[0]})") from None
    encoder = None
    if partial:
        if not isinstance(artifact.get("encoder"), dict):
            raise MimicError(f"corrupt mimicker artifact {path}: span {config.span} but no kept teacher weights "
                             "('encoder')")
        try:
            encoder = build_teacher_encoder(family_name, record["checkpoint_config"], config.resolve_span(num_layers),
                                            num_layers, artifact["encoder"])
        except MimicError as error:
            raise MimicError(f"corrupt mimicker artifact {path}: {error}") from None
    return MimicUpstream(frontend, mimicker, config, teacher=record, targets=targets,
                         training_record=artifact.get("training"), encoder=encoder, compact=compact)


# The hub entries ``mimic`` and ``mimic_local`` are named functions in upstreams/mimic/hubconf.py (s3prl's shape);
# these are their bodies. One family serves every teacher family: the artifact records its teacher. The optional
# ``-g`` YAML may name ``teacher:`` (a checkpoint path or hub name whose sha256 must match the artifact's teacher),
# ``teacher_sha256:``, ``family:`` and ``compact:`` (the hidden-state layout, overriding the artifact's);
# ``frozen_frontend: true`` keeps the front end out of training under ``-f`` (the paper's step 2 of a non-mimicker).
def hub_entry(ckpt: Optional[str] = None, model_config: Optional[str] = None) -> MimicUpstream:
    """``mimic -k ARTIFACT`` or ``-g CONFIG.yaml`` naming ``artifact:``."""
    options = upstream_options(model_config)
    artifact = ckpt or options.get("artifact")
    if not artifact:
        raise MimicError(
            "mimic needs a mimicker artifact: pass -k ARTIFACT.pt (written by "
            "superb_redundancy.mimic.train.train_mimicker) or `artifact: PATH` in -g CONFIG.yaml"
        )
    return _load(artifact, options)


def hub_entry_local(ckpt: Optional[str] = None, model_config: Optional[str] = None) -> MimicUpstream:
    """``mimic_local -k ARTIFACT [-g CONFIG.yaml]``."""
    if not ckpt:
        raise MimicError("mimic_local needs a mimicker artifact: pass -k ARTIFACT.pt")
    return _load(ckpt, upstream_options(model_config))


def _load(artifact: str, options: dict) -> MimicUpstream:
    upstream = load_mimic_artifact(artifact, teacher=options.get("teacher"),
                                   teacher_sha256=options.get("teacher_sha256"), family=options.get("family"),
                                   compact=options.get("compact"))
    if options.get("frozen_frontend"):
        upstream.freeze_frontend()
    return upstream
