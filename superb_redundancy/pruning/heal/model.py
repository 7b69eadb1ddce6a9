"""The pruned model to heal: a pruned artifact file, or a prune spec applied to its base, checked before any work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from superb_redundancy.core.files import load_checkpoint, model_sha256, sha256_file
from superb_redundancy.models.checkpoints import CheckpointError, load_base_checkpoint, resolve_base
from superb_redundancy.models.families import ModelFamily, check_checkpoint, get_family
from superb_redundancy.pruning.heal.config import HealError
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import ARTIFACT_KEY, ARTIFACT_KIND, pruned_artifact

__all__ = ["PrunedModel", "load_pruned_model", "HEALED_KEY"]

HEALED_KEY = "healed"  # the record's key in an artifact's superb_redundancy entry


@dataclass
class PrunedModel:
    """The pruned model to heal: its artifact (the compact stock checkpoint with the ``superb_redundancy`` entry)
    and where it came from (an artifact file, or a prune spec applied to a base)."""

    family: ModelFamily
    artifact: dict
    path: Optional[Path] = None  # the artifact file, if given as one

    @property
    def meta(self) -> dict:
        return self.artifact[ARTIFACT_KEY]

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    @property
    def kept(self) -> list[int]:
        return [int(i) for i in self.meta["kept_layers"]]

    def source(self) -> dict:
        """What the record says about the input (content hash: the model, whatever file it came in)."""
        return {"artifact": str(self.path) if self.path else None,
                "sha256": sha256_file(self.path) if self.path else None,
                "model_sha256": model_sha256(self.artifact),
                "healed": self.meta.get(HEALED_KEY)}  # healing a healed model keeps the earlier record


def _load_artifact_file(path: Path, family: Optional[str]) -> PrunedModel:
    path = path.expanduser()
    try:
        if family is not None:
            fam = get_family(family)
            checkpoint = load_base_checkpoint(path, fam)
        else:
            checkpoint = load_checkpoint(path, "pruned artifact", HealError)
            fam = check_checkpoint(checkpoint, path, error=HealError)
    except CheckpointError as error:
        raise HealError(str(error).replace("checkpoint not found", "pruned artifact not found")) from None
    meta = checkpoint.get(ARTIFACT_KEY)
    if not isinstance(meta, dict) or meta.get("kind") != ARTIFACT_KIND:
        raise HealError(f"{path} is not a pruned artifact (a plain {fam.name} checkpoint?); give one written by "
                        f"`superb-redundancy prune --artifact`, or a prune spec with -g SPEC --family {fam.name}")
    if meta.get("family") != fam.name:
        raise HealError(f"{path} is a pruned {meta.get('family')} artifact, not {fam.name} "
                        f"(--family {meta.get('family')})")
    return PrunedModel(fam, checkpoint, path)


def _from_spec(spec: PruneSpec | str | os.PathLike, family: str, base: Optional[str]) -> PrunedModel:
    try:
        if not isinstance(spec, PruneSpec):
            spec = PruneSpec.from_yaml(spec)
        if not (base or spec.base):
            raise HealError("the prune spec names no base model: set base: in it, or pass --base CKPT")
        fam = get_family(family)
        path = resolve_base(base or spec.base, fam)
        if ARTIFACT_KEY in load_base_checkpoint(path, fam, mmap=True):
            raise HealError(f"base {path} is already a pruned artifact; heal it with -k {path}")
        return PrunedModel(fam, pruned_artifact(family, spec, ckpt=base))
    except ValueError as error:  # CheckpointError, PrunedUpstreamError and PruneSpecError among them
        if isinstance(error, HealError):
            raise
        raise HealError(str(error)) from None


def load_pruned_model(artifact: Optional[str | os.PathLike] = None, family: Optional[str] = None,
                      spec: Optional[PruneSpec | str | os.PathLike] = None,
                      base: Optional[str] = None) -> PrunedModel:
    """The model to heal: a pruned ``artifact`` file (its family read from it, or checked against ``family``), or
    a prune ``spec`` (object or YAML path) of ``family`` applied to ``base`` (default: the spec's ``base:``)."""
    if (artifact is None) == (spec is None):
        raise HealError("give the pruned model either as a pruned artifact (-k ARTIFACT) or as a prune spec "
                        "(-g SPEC with --family and the spec's base: or --base), not both")
    if family is not None and family not in ("wav2vec2", "hubert", "wavlm"):
        raise HealError(f"family {family!r} is invalid; valid: wav2vec2, hubert, wavlm")
    if artifact is not None:
        if base is not None:
            raise HealError("--base is for a prune spec (-g); a pruned artifact records its base (the default "
                            "teacher; --teacher names another)")
        return _load_artifact_file(Path(artifact), family)
    if family is None:
        raise HealError("a prune spec (-g) needs --family (wav2vec2, hubert or wavlm)")
    return _from_spec(spec, family, base)
