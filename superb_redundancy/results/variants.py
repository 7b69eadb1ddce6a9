"""What variant an experiment evaluated: the description its ``-k`` artifact or ``-g`` prune spec carries
(:mod:`superb_redundancy.core.variant`), read through one function (:func:`describe_variant`), and a checkpoint's
identity by content (:func:`model_identity`). Harvest (:mod:`superb_redundancy.results.records`) calls them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from superb_redundancy.core.errors import UserError
from superb_redundancy.core.files import file_sha256
from superb_redundancy.core.variant import (DESCRIPTION_KEY, VariantDescription, VariantError, VariantKind,
                                            read_description)

__all__ = ["HarvestError", "describe_variant", "model_identity"]


class HarvestError(UserError):
    """An experiment directory that cannot be turned into a record."""


def describe_variant(ckpt: Optional[str], model_config: Optional[str]) -> VariantDescription:
    """What the variant of ``-k ckpt`` / ``-g model_config`` is: the description its artifact or prune spec
    carries (:func:`~superb_redundancy.core.variant.read_description`); for files written before descriptions,
    the one their writer would have written; else a stock model, its own base."""
    if ckpt and Path(ckpt).expanduser().is_dir():  # a Hugging Face folder (hf_local -k DIR)
        return _hf_folder(ckpt)
    ckpt = ckpt or _artifact_named_by(model_config)
    try:
        found = read_description(ckpt, model_config) or _undescribed(ckpt, model_config)
    except VariantError as error:
        raise HarvestError(str(error)) from None
    if found is not None:
        return found
    return VariantDescription(kind=VariantKind.STOCK, family=_family(ckpt), base=ckpt, base_sha256=model_identity(ckpt))


def _artifact_named_by(model_config: Optional[str]) -> Optional[str]:
    """The artifact a mimic upstream's ``-g`` options name (``mimic -g CONFIG.yaml`` with ``artifact: PATH``)."""
    from superb_redundancy.mimic.upstream import upstream_options

    try:
        return upstream_options(model_config).get("artifact")
    except UserError:  # not a mimic upstream's options: a prune spec, another upstream's config
        return None


def _hf_folder(folder: str) -> VariantDescription:
    """A Hugging Face folder: the description its pruning record carries (superb_redundancy's pruned and
    converted folders), else a stock model, its own base, named by its resolved path (a folder has no content
    hash here; the pruned folders name their source so)."""
    import json

    from superb_redundancy.models.hf import PRUNING_RECORD

    path = Path(folder).expanduser().resolve()
    record_path = path / PRUNING_RECORD
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HarvestError(f"{record_path} is not valid JSON ({error})") from None
        described = record.get(DESCRIPTION_KEY) if isinstance(record, dict) else None
        if described is not None:
            try:
                return VariantDescription.from_dict(described, str(record_path))
            except VariantError as error:
                raise HarvestError(str(error)) from None
    return VariantDescription(kind=VariantKind.STOCK, base=str(path))


def _undescribed(ckpt: Optional[str], model_config: Optional[str]) -> Optional[VariantDescription]:
    """A pruned or mimicker artifact, or a prune spec, from before variant descriptions (or a spec written by
    hand): described by the function that describes new ones. None for anything else."""
    from superb_redundancy.core.files import load_checkpoint
    from superb_redundancy.core.variant import ARTIFACT_KEY, MIMIC_ARTIFACT_KIND, PRUNED_ARTIFACT_KIND

    if ckpt and Path(ckpt).expanduser().is_file():
        try:
            artifact = load_checkpoint(ckpt, "checkpoint", mmap=True)
        except ValueError:
            artifact = None
        entry = artifact.get(ARTIFACT_KEY) if isinstance(artifact, dict) else None
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind == PRUNED_ARTIFACT_KIND:
            from superb_redundancy.pruning.heal.artifact import healed_description
            from superb_redundancy.pruning.upstream import pruned_description

            healed = entry.get("healed")
            return healed_description(entry, healed) if isinstance(healed, dict) else pruned_description(entry)
        if kind == MIMIC_ARTIFACT_KIND:
            from superb_redundancy.mimic.artifact import mimic_description

            return mimic_description(artifact.get("config") or {}, artifact.get("teacher") or {},
                                     artifact.get("training"))
    if model_config and Path(model_config).expanduser().is_file():
        from superb_redundancy.pruning.spec import PruneSpec

        try:
            spec = PruneSpec.from_yaml(model_config)
        except UserError:
            return None  # another upstream's -g (a mimicker's options, a model config): not a prune spec
        if spec.drop_layers is None and spec.keep_layers is None:
            return None
        base = ckpt or spec.base
        family = _family(base)
        num_layers = _num_layers(base) if spec.drop_layers is None else None
        if spec.drop_layers is None and num_layers is None:
            raise HarvestError(f"{model_config} gives keep_layers of a base whose layers cannot be counted; "
                               "write the spec with superb-redundancy prune-spec")
        described = spec.with_base(base).described(family, num_layers).variant
        return described.with_base(base, model_identity(base) if base and Path(base).is_file() else None)
    return None


def _family(path: Optional[str]) -> Optional[str]:
    """The model family of a stock checkpoint file; None when it is not one."""
    from superb_redundancy.models.families import family_of_checkpoint

    checkpoint = _checkpoint(path)
    family = family_of_checkpoint(checkpoint) if isinstance(checkpoint, dict) else None
    return family.name if family is not None else None


def _num_layers(path: Optional[str]) -> Optional[int]:
    from superb_redundancy.models.families import family_of_checkpoint

    checkpoint = _checkpoint(path)
    family = family_of_checkpoint(checkpoint) if isinstance(checkpoint, dict) else None
    return family.num_layers(checkpoint) if family is not None else None


def _checkpoint(path: Optional[str]):
    from superb_redundancy.core.files import load_checkpoint

    if not path or not Path(path).expanduser().is_file():
        return None
    try:
        return load_checkpoint(path, "checkpoint", mmap=True)
    except ValueError:
        return None


def model_identity(path: Optional[str]) -> Optional[str]:
    """A checkpoint's identity: the content hash of its weights and config (files.model_sha256, so two saves of
    one model agree whatever their bytes); the file's sha256 for what is not a torch checkpoint; None if absent."""
    from superb_redundancy.core.files import checkpoint_sha256

    try:
        return checkpoint_sha256(path) or file_sha256(path)
    except ValueError:  # not a torch file (a Hugging Face folder's file, a YAML given as -k)
        return file_sha256(path)
