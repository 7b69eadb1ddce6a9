"""Layer pruning of Hugging Face wav2vec2 / HuBERT / WavLM ``save_pretrained`` folders.

:func:`prune_hf_model` writes a copy of a folder with transformer layers removed (the surgery of
:func:`superb_redundancy.models.hf.drop_hf_layers`), which plain ``transformers.AutoModel.from_pretrained`` and
s3prl's ``hf_wav2vec2_custom`` / ``hf_hubert_custom`` load. :func:`prune_hf_folder` is ``superb-redundancy prune``
on such a folder: the similarity analysis (hidden states through :class:`~superb_redundancy.models.hf.HFUpstream`),
the pruning plan, then the pruned folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

from superb_redundancy.analysis.report import SimilarityReport, SimilaritySettings
from superb_redundancy.core.audio import list_audio
from superb_redundancy.core.files import atomic_dir
from superb_redundancy.core.variant import DESCRIPTION_KEY, VariantDescription, VariantKind
from superb_redundancy.models.families import FAMILIES
from superb_redundancy.models.hf import (FEATURE_EXTRACTOR_FILE, PRUNING_RECORD, HFModelError, HFUpstream,
                                         drop_hf_layers, load_feature_extractor, load_hf_model, read_hf_config,
                                         resolve_dropped)
from superb_redundancy.pruning.plan import PruningPlan, prune_by_objective
from superb_redundancy.pruning.spec import PruneSpec, PruneSpecError, kept_layers
from superb_redundancy.core.errors import UserError

__all__ = ["prune_hf_model", "prune_hf_folder"]

#: tokenizer files of a *ForCTC folder, copied to the pruned folder so it stays usable with its processor
_TOKENIZER_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "tokenizer.json")


def _resolve(drop: Sequence[int] | PruneSpec, num_layers: int) -> tuple[int, ...]:
    if not isinstance(drop, PruneSpec):
        return resolve_dropped(drop, num_layers)
    try:
        return drop.resolve(num_layers)
    except PruneSpecError as error:
        raise HFModelError(str(error)) from None


def prune_hf_model(src_dir, drop_layers: Sequence[int] | PruneSpec, dst_dir, overwrite: bool = False,
                   notes: Optional[dict] = None) -> Path:
    """Write ``src_dir`` with ``drop_layers`` removed to ``dst_dir`` (save_pretrained, safetensors); returns it.

    ``drop_layers`` is a list of 0-based layers or a :class:`PruneSpec` (drop_layers or keep_layers), checked
    with :meth:`PruneSpec.resolve` before any weights load. The saved architecture (a head included) is kept.
    The feature extractor is copied, or a default one written if the source had none (so s3prl's
    ``hf_*_custom`` never turns to the Hub). The folder appears atomically (written beside it, then renamed);
    an existing non-empty ``dst_dir`` is an error unless ``overwrite``.
    """
    src = Path(src_dir).expanduser()
    config = read_hf_config(src)
    num_layers = int(config.get("num_hidden_layers", 0))
    dropped = _resolve(drop_layers, num_layers)
    dst = Path(dst_dir).expanduser()
    if dst.resolve() == src.resolve():
        raise HFModelError(f"the pruned model must go to a new folder, not over its source {src}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise HFModelError(f"{dst} exists and is not empty; choose a new folder (or pass overwrite=True)")

    extractor = load_feature_extractor(src)
    model = load_hf_model(src, with_head=True)
    drop_hf_layers(model, dropped)
    record = {
        "source": str(src.resolve()),
        "model_type": config["model_type"],
        "num_layers": num_layers,
        "dropped_layers": list(dropped),
        "kept_layers": list(kept_layers(dropped, num_layers)),
        "feature_extractor": "copied" if (src / FEATURE_EXTRACTOR_FILE).is_file() else "default written",
        "notes": dict(notes or {}),
        # what the leaderboard reads (results/variants.py): its source folder, by resolved path, is its base
        DESCRIPTION_KEY: VariantDescription(
            kind=VariantKind.PRUNED, family=config["model_type"] if config["model_type"] in FAMILIES else None,
            base=str(src.resolve()), drop_layers=tuple(dropped),
            objective=(notes or {}).get("objective")).to_dict(),
    }
    # the whole folder is one unit: unit=("*",) carries nothing of a replaced folder over (no stale weights file)
    with atomic_dir(dst, unit=("*",)) as tmp:
        model.save_pretrained(str(tmp))
        extractor.save_pretrained(str(tmp))
        for name in _TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        (tmp / PRUNING_RECORD).write_text(json.dumps(record, indent=1))
    return dst


def prune_hf_folder(base: str | os.PathLike, objective: str, amount: int | float, *,
                    output_dir: Optional[str | os.PathLike], similarity: Optional[str | os.PathLike] = None,
                    data: Optional[str | os.PathLike | Sequence[str | os.PathLike]] = None, limit: Optional[int] = None, seed: int = 0,
                    device: Optional[str] = "cpu", iterative: bool = False, allow_first: bool = False,
                    family: Optional[str] = None, spec_path: Optional[str | os.PathLike] = None,
                    ) -> tuple[PruningPlan, PruneSpec, Path]:
    """Plan the pruning of the HF folder ``base`` and write the pruned folder to ``output_dir``.

    The similarity report (``similarity``, from ``superb-redundancy similarity``; or computed from the clips of
    ``data``, ``limit`` of them drawn with ``seed``) must index this model's L+1 hidden states; ``iterative``
    recomputes it on the pruned model after each layer (it needs ``data``). ``family``, if given, must be the
    folder's model_type. ``spec_path``: also write the plan's prune spec there (a record of the plan), before
    the folder. Everything is checked before any work. Returns the plan, its spec and the pruned folder.
    """
    base = Path(base).expanduser()
    num_layers = _check_request(base, output_dir, family)
    files = list_audio(data, limit=limit, seed=seed) if data else None
    report = None
    if similarity:
        report = SimilarityReport.load(similarity)
        if report.num_layers != num_layers:
            raise UserError(f"the similarity report indexes {report.num_layers} layers; {base} has {num_layers}")
        settings = report.settings
    elif files is None:
        raise UserError("give --similarity REPORT (from `superb-redundancy similarity`) or --data AUDIO_DIR")
    else:
        settings = SimilaritySettings()
    if iterative and files is None:
        raise UserError("--iterative recomputes scores on the pruned model: it needs --data AUDIO_DIR")
    label = None if data is None else str(data) if isinstance(data, (str, os.PathLike)) else " ".join(map(str, data))
    source = {"upstream": "hf_local", "ckpt": str(base), "data": label}
    # full positions: L+1 states (a dropped layer's output repeats its input), so scores index layers as before
    plan, spec = prune_by_objective(
        family or read_hf_config(base)["model_type"], str(base), objective, amount, report=report, files=files, settings=settings, iterative=iterative,
        keep_first=not allow_first, device=device or "cpu", source=source,
        variant=lambda dropped: HFUpstream(base, drop_layers=dropped, full_positions=True))
    if spec_path:
        spec.to_yaml(spec_path)
    return plan, spec, prune_hf_model(base, spec, output_dir, notes=spec.notes)


def _check_request(base: Path, output_dir, family: Optional[str]) -> int:
    """The checks of :func:`prune_hf_folder` that need no audio; returns the number of transformer layers."""
    config = read_hf_config(base)
    if family and family != config["model_type"]:
        raise HFModelError(f"--family {family} does not match {base} (model_type {config['model_type']!r})")
    if not output_dir:
        raise UserError("an HF base is pruned into a new save_pretrained folder: give --output-dir DIR")
    existing = Path(output_dir).expanduser()
    if existing.exists() and (not existing.is_dir() or any(existing.iterdir())):
        raise UserError(f"--output-dir {existing} exists and is not empty; choose a new folder")
    return int(config["num_hidden_layers"])
