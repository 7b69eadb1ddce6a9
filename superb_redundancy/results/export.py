"""Export what s3prl's runner fine-tuned: the upstream of a ``-f`` experiment as a model file of its own.

s3prl's runner trained with ``-f`` (``--upstream_trainable``) saves the upstream's state in ``dev-best.ckpt`` /
``states-*.ckpt`` under ``Upstream`` (the state dict of the object the hub function returned, so its keys carry
that object's prefixes) beside ``Args`` (an ``argparse.Namespace``: upstream, upstream_ckpt,
upstream_model_config). Nothing in s3prl turns it back into a checkpoint (s3prl issue #167). :func:`export_experiment`
does, for the upstreams this project makes and the stock families it prunes:

============================================  ==================================  ===========================
trained with                                  ``Upstream`` keys                   exported as
============================================  ==================================  ===========================
``pruned_<family>_local -k ARTIFACT``         ``upstream.model.*`` (L positions)  pruned artifact (K layers)
``pruned_<family> -g SPEC [-k BASE]``         ``upstream.model.*``                pruned artifact (K layers)
``mimic_local -k ARTIFACT`` / ``mimic``       ``frontend.*``, ``mimicker.*``      mimic artifact
``<family>_local -k CKPT`` (and hub names)    ``model.*``                         stock checkpoint
============================================  ==================================  ===========================

The new file is the source model (the artifact or checkpoint the experiment loaded) with every weight replaced by
the fine-tuned one, so it loads with the same upstream name (``pruned_<family>_local``, ``mimic_local``,
``<family>_local``) and computes what the experiment's upstream computed, bit for bit. The mapping must be exact:
every weight of the live model is in ``Upstream`` and every ``Upstream`` entry lands on a weight of the source of
the same shape, else nothing is written and one line says what does not fit (an experiment trained on another
file than the one its ``Args`` name). Entries the live model does not hold (data2vec's EMA teacher) stay as in
the source. Where it came from is recorded in the file: ``superb_redundancy.finetuned`` in artifacts, a top-level
``finetuned`` entry in stock checkpoints (:data:`superb_redundancy.core.files.PROVENANCE`: not part of the model's
identity hash).

:func:`export` (``superb-redundancy export``) adds the conversions of :mod:`superb_redundancy.models.hf_convert`: an
s3prl-format wav2vec2 / HuBERT checkpoint, pruned artifact or such a fine-tuned experiment to a transformers
``save_pretrained`` folder (``--output-dir``; the kept layers only, with a model card), and back.

Everything is checked before anything is written (one line per problem, :class:`ExportError`); every file is
read with ``torch.load(weights_only=True)`` and written atomically.
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from superb_redundancy.core.files import check_writable, load_checkpoint, sha256_file, torch_save
from superb_redundancy.models.families import FAMILIES, ModelFamily
from superb_redundancy.core.errors import UserError

__all__ = ["ExportError", "ExperimentCheckpoint", "find_experiment_checkpoint", "read_experiment",
           "export_experiment", "finetuned_model", "rebuild_upstream", "FINETUNED_KEY"]

#: where the provenance goes: artifact["superb_redundancy"][FINETUNED_KEY], or checkpoint[FINETUNED_KEY]
FINETUNED_KEY = "finetuned"


class ExportError(UserError):
    """An experiment that cannot be exported, or a bad output; raised before anything is written."""


# ---------------------------------------------------------------------------------------------- the experiment
@dataclass
class ExperimentCheckpoint:
    path: Path
    args: argparse.Namespace
    upstream_state: dict
    step: Optional[int]

    @property
    def upstream(self) -> str:
        return str(self.args.upstream)

    @property
    def upstream_ckpt(self) -> Optional[str]:
        return getattr(self.args, "upstream_ckpt", None) or None

    @property
    def upstream_model_config(self) -> Optional[str]:
        return getattr(self.args, "upstream_model_config", None) or None


def find_experiment_checkpoint(expdir_or_ckpt: str | os.PathLike) -> Path:
    """A checkpoint file as given, or in an experiment folder ``dev-best.ckpt`` (else the latest ``states-N``)."""
    path = Path(expdir_or_ckpt).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise ExportError(f"experiment not found: {path} (give an s3prl experiment folder or its .ckpt file)")
    best = path / "dev-best.ckpt"
    if best.is_file():
        return best
    states = sorted(path.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[1])
                    if p.stem.split("-")[1].isdigit() else -1)
    if not states:
        raise ExportError(f"{path} holds no dev-best.ckpt or states-*.ckpt: not a trained s3prl experiment")
    return states[-1]


def read_experiment(expdir_or_ckpt: str | os.PathLike) -> ExperimentCheckpoint:
    """The checkpoint's Args, Step and fine-tuned Upstream state; one-line :class:`ExportError` otherwise."""
    path = find_experiment_checkpoint(expdir_or_ckpt)
    checkpoint = load_checkpoint(path, "s3prl experiment checkpoint", ExportError,
                                 safe_globals=[argparse.Namespace])
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("Args"), argparse.Namespace):
        raise ExportError(f"{path} is not an s3prl experiment checkpoint (no Args)")
    args = checkpoint["Args"]
    if not getattr(args, "upstream", None):
        raise ExportError(f"{path}: its Args name no upstream")
    state = checkpoint.get("Upstream")
    if not state:
        source = getattr(args, "upstream_ckpt", None) or getattr(args, "upstream_model_config", None) or args.upstream
        raise ExportError(f"{path} holds no fine-tuned upstream: it was trained without -f (the upstream stayed "
                          f"frozen), so {source} is already the model it used; train with -f to fine-tune it")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path}: its Upstream entry is not a state dict")
    step = checkpoint.get("Step")
    return ExperimentCheckpoint(path, args, state, int(step) if isinstance(step, int) else None)


def _source_file(value: Optional[str], what: str, override: Optional[str]) -> Path:
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ExportError(f"--source {path} not found")
        return path
    if not value:
        raise ExportError(f"the experiment's Args name no {what} (-k); pass --source PATH")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ExportError(f"the experiment's {what} {value} is not found (a relative path is read from the current "
                          f"folder, the experiment's from the one it ran in); pass --source PATH")
    return path


# ---------------------------------------------------------------------------------------------- upstream kinds
def _family_of_name(name: str, pattern: str) -> Optional[ModelFamily]:
    return next((f for f in FAMILIES.values() if pattern.format(f.name) == name), None)


def _stock_family(name: str) -> Optional[ModelFamily]:
    for family in FAMILIES.values():
        if name in (family.local_hub_name, f"{family.name}_custom", f"{family.name}_url"):
            return family
    return None


def _hub_family(name: str) -> Optional[ModelFamily]:
    for family in FAMILIES.values():
        try:
            if name in family.hub_functions():
                return family
        except ImportError:  # pragma: no cover - s3prl without that family
            continue
    return None


_SUPPORTED = ("pruned_<family>_local, pruned_<family>, mimic_local, mimic, <family>_local (and the stock hub names) "
              f"for the families {', '.join(FAMILIES)}")


@dataclass
class _Plan:
    """What to export: the source model file (as loaded), where the live weights go in it, and how to name it."""

    kind: str  # "pruned", "mimic" or "stock"
    template: dict  # the source model, to receive the fine-tuned weights
    source: str  # the file (or hub name) the experiment's upstream was built from
    source_sha256: Optional[str]
    mapping: dict  # Upstream key -> (section, key) in template, section a tuple of dict keys
    load_as: str  # the upstream name that loads the exported file
    family: Optional[ModelFamily]


def _pruned_plan(exp: ExperimentCheckpoint, family: ModelFamily, local: bool, override: Optional[str]) -> _Plan:
    from superb_redundancy.models.checkpoints import CheckpointError, load_base_checkpoint
    from superb_redundancy.pruning.spec import PruneSpec, PruneSpecError
    from superb_redundancy.pruning.upstream import ARTIFACT_KEY, ARTIFACT_KIND, pruned_artifact

    try:
        if local:
            path = _source_file(exp.upstream_ckpt, "pruned artifact", override)
            template = load_base_checkpoint(path, family)
            meta = template.get(ARTIFACT_KEY)
            if not isinstance(meta, dict) or meta.get("kind") != ARTIFACT_KIND or meta.get("family") != family.name:
                raise ExportError(f"{path} is not a pruned {family.name} artifact (the experiment used "
                                  f"{exp.upstream}); pass --source with the artifact it was trained on")
            source = str(path)
        else:
            if override:
                raise ExportError(f"--source: the experiment pruned its base by a spec (-g); edit the spec's base "
                                  f"or its -k instead")
            if not exp.upstream_model_config:
                raise ExportError(f"the experiment's Args name no prune spec (-g) for {exp.upstream}")
            spec_path = Path(exp.upstream_model_config).expanduser()
            if not spec_path.is_file():
                raise ExportError(f"the experiment's prune spec {spec_path} is not found (a relative path is read "
                                  f"from the current folder, the experiment's from the one it ran in)")
            # what save_pruned would write for the spec (and -k, which overrides its base:)
            template = pruned_artifact(family.name, PruneSpec.from_yaml(spec_path), ckpt=exp.upstream_ckpt)
            path, source = spec_path, str(spec_path)
    except (CheckpointError, PruneSpecError) as error:  # PrunedUpstreamError is a CheckpointError
        raise ExportError(str(error)) from None
    meta = template[ARTIFACT_KEY]
    renumber = {int(old): new for new, old in enumerate(meta["kept_layers"])}
    prefix, layers = "upstream.model.", family.layer_prefix()
    mapping = {}
    for key in exp.upstream_state:
        if not key.startswith(prefix):
            mapping[key] = None
            continue
        name = key[len(prefix):]
        if name.startswith(layers):
            index, rest = name[len(layers):].split(".", 1)
            if int(index) not in renumber:
                mapping[key] = None  # a layer the source drops: trained on another artifact
                continue
            name = f"{layers}{renumber[int(index)]}.{rest}"
        mapping[key] = ((family.weights_key,), name)
    return _Plan("pruned", template, source, sha256_file(path), mapping, family.pruned_local_hub_name, family)


def _mimic_plan(exp: ExperimentCheckpoint, override: Optional[str]) -> _Plan:
    from superb_redundancy.mimic.artifact import read_artifact
    from superb_redundancy.mimic.config import MimicError
    from superb_redundancy.mimic.upstream import upstream_options

    try:
        options = upstream_options(exp.upstream_model_config) if not override else {}
        value = exp.upstream_ckpt or options.get("artifact")
        path = _source_file(value, "mimicker artifact", override)
        template = read_artifact(path)
    except MimicError as error:
        raise ExportError(str(error)) from None
    mapping = {}
    for key in exp.upstream_state:
        section, _, name = key.partition(".")
        mapping[key] = ((section,), name) if section in ("frontend", "mimicker") else None
    return _Plan("mimic", template, str(path), sha256_file(path), mapping, "mimic_local", None)


def _stock_plan(exp: ExperimentCheckpoint, family: ModelFamily, hub_name: bool, override: Optional[str]) -> _Plan:
    from superb_redundancy.models.checkpoints import CheckpointError, load_base_checkpoint, resolve_base
    from superb_redundancy.pruning.upstream import ARTIFACT_KEY

    try:
        if hub_name and not override:
            path = resolve_base(exp.upstream, family)
        else:
            path = _source_file(exp.upstream_ckpt, f"{family.name} checkpoint", override)
        template = load_base_checkpoint(path, family)
    except CheckpointError as error:
        raise ExportError(str(error)) from None
    if ARTIFACT_KEY in template:
        raise ExportError(f"{path} is a pruned artifact, not a stock {family.name} checkpoint")
    mapping = {key: ((family.weights_key,), key[len("model."):]) if key.startswith("model.") else None
               for key in exp.upstream_state}
    return _Plan("stock", template, str(path), sha256_file(path), mapping, family.local_hub_name, family)


def _plan(exp: ExperimentCheckpoint, source: Optional[str]) -> _Plan:
    name = exp.upstream
    if getattr(exp.args, "hub", "torch") == "huggingface":
        raise ExportError(f"upstream {name!r} came from the Hugging Face hub (--hub huggingface); supported: "
                          + _SUPPORTED)
    family = _family_of_name(name, "pruned_{}_local")
    if family is not None:
        return _pruned_plan(exp, family, local=True, override=source)
    family = _family_of_name(name, "pruned_{}")
    if family is not None:
        return _pruned_plan(exp, family, local=False, override=source)
    if name in ("mimic", "mimic_local"):
        return _mimic_plan(exp, source)
    family = _stock_family(name)
    if family is not None:
        return _stock_plan(exp, family, hub_name=False, override=source)
    family = _hub_family(name)
    if family is not None:
        return _stock_plan(exp, family, hub_name=True, override=source)
    raise ExportError(f"upstream {name!r} cannot be exported; supported: {_SUPPORTED}")


def _section(template: dict, path: tuple) -> dict:
    node = template
    for key in path:
        node = node[key]
    return node


def _apply(plan: _Plan, exp: ExperimentCheckpoint) -> tuple[dict, int, list[str]]:
    """The template with the fine-tuned weights; (model, weights changed, source entries kept as they were)."""
    unmapped = [k for k, target in plan.mapping.items() if target is None]
    targets = {k: t for k, t in plan.mapping.items() if t is not None}
    missing_in_source = [k for k, (section, name) in targets.items()
                         if not isinstance(_section(plan.template, section).get(name), torch.Tensor)]
    wrong_shape = [k for k, (section, name) in targets.items() if k not in missing_in_source
                   and tuple(_section(plan.template, section)[name].shape) != tuple(exp.upstream_state[k].shape)]
    problems = []
    if unmapped or missing_in_source:
        bad = (unmapped + missing_in_source)[0]
        problems.append(f"{len(unmapped) + len(missing_in_source)} fine-tuned weight(s) the source lacks, e.g. {bad}")
    if wrong_shape:
        k = wrong_shape[0]
        section, name = targets[k]
        problems.append(f"{len(wrong_shape)} of another shape, e.g. {k} {list(exp.upstream_state[k].shape)} "
                        f"(source: {list(_section(plan.template, section)[name].shape)})")
    sections = {("frontend",), ("mimicker",)} if plan.kind == "mimic" else {(plan.family.weights_key,)}
    covered = {(section, name) for section, name in targets.values()}
    not_trained = [f"{'.'.join(section)}.{name}" for section in sorted(sections)
                   for name, value in _section(plan.template, section).items()
                   if isinstance(value, torch.Tensor) and (section, name) not in covered]
    if not_trained:
        problems.append(f"{len(not_trained)} weight(s) of the source the experiment's upstream lacks, "
                        f"e.g. {not_trained[0]}")
    if problems:
        raise ExportError(f"{exp.path}: its fine-tuned upstream does not fit {plan.source} ("
                          + "; ".join(problems) + "): was it trained on another file? (--source PATH names the right one)")
    model = copy.copy(plan.template)
    for section in sections:  # new dicts for the sections we write into; the rest is shared with the template
        parent = model
        for key in section[:-1]:
            parent[key] = dict(parent[key])
            parent = parent[key]
        parent[section[-1]] = dict(_section(plan.template, section))
    changed = 0
    for key, (section, name) in targets.items():
        value = exp.upstream_state[key].detach().cpu().clone().contiguous()
        target = _section(model, section)
        changed += int(not torch.equal(value, target[name]))
        target[name] = value.to(target[name].dtype)
    kept = sorted(f"{'.'.join(section)}.{name}" for section in sections
                  for name in _section(plan.template, section) if (section, name) not in covered)
    return model, changed, kept


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def finetuned_model(expdir_or_ckpt: str | os.PathLike, source: Optional[str] = None) -> tuple[dict, dict]:
    """The exported model dict (not written) and a summary: (model, {kind, load_as, source, ...})."""
    exp = read_experiment(expdir_or_ckpt)
    plan = _plan(exp, source)
    model, changed, kept = _apply(plan, exp)
    record = {
        "expdir": str(exp.path.parent.resolve()),
        "checkpoint": str(exp.path.resolve()),
        "checkpoint_sha256": sha256_file(exp.path),
        "step": exp.step,
        "downstream": _plain(getattr(exp.args, "downstream", None)),
        "upstream": exp.upstream,
        "upstream_ckpt": _plain(exp.upstream_ckpt),
        "upstream_model_config": _plain(exp.upstream_model_config),
        "source": plan.source,
        "source_sha256": plan.source_sha256,
        "weights_changed": changed,
        "kept_from_source": kept,  # entries the live upstream does not hold (data2vec's EMA teacher)
    }
    previous = None
    if plan.kind in ("pruned", "mimic"):
        from superb_redundancy.pruning.upstream import ARTIFACT_KEY

        meta = dict(model[ARTIFACT_KEY])
        previous = meta.get(FINETUNED_KEY)
        if previous is not None:
            record["previous"] = previous  # fine-tuned again: the chain of experiments
        meta[FINETUNED_KEY] = record
        model[ARTIFACT_KEY] = meta
    else:
        previous = model.get(FINETUNED_KEY)
        if previous is not None:
            record["previous"] = previous
        model[FINETUNED_KEY] = record
    summary = {"kind": plan.kind, "load_as": plan.load_as, "source": plan.source, "step": exp.step,
               "checkpoint": str(exp.path), "weights": len([t for t in plan.mapping.values() if t is not None]),
               "weights_changed": changed, "family": plan.family.name if plan.family else None}
    return model, summary


def export_experiment(expdir_or_ckpt: str | os.PathLike, output: str | os.PathLike,
                      source: Optional[str] = None) -> tuple[Path, dict]:
    """Write the fine-tuned upstream of an s3prl ``-f`` experiment to ``output`` (atomically); returns (path,
    summary). ``source``: the artifact/checkpoint the experiment was trained on, where its Args name a moved file."""
    output = Path(output).expanduser()
    if output.is_dir():
        raise ExportError(f"--output {output} is a folder; give a file path (e.g. {output}/finetuned.pt)")
    check_writable(output.parent)
    model, summary = finetuned_model(expdir_or_ckpt, source)
    for what in (summary["source"], summary["checkpoint"]):
        if Path(what).is_file() and output.resolve() == Path(what).resolve():
            raise ExportError(f"--output {output} is the {'source' if what == summary['source'] else 'experiment'} "
                              f"file itself; write the export to a new file")
    return torch_save(model, output), summary


# ---------------------------------------------------------------------------------------------- checks
def rebuild_upstream(expdir_or_ckpt: str | os.PathLike) -> nn.Module:
    """The experiment's upstream as s3prl's runner rebuilds it for ``-m evaluate -e CKPT``: the hub function
    called with the saved Args, then ``load_state_dict(Upstream)`` (strict); in eval mode."""
    from superb_redundancy.hub.install import build_upstream

    exp = read_experiment(expdir_or_ckpt)
    upstream = build_upstream(exp.upstream, exp.upstream_ckpt, exp.upstream_model_config)
    upstream.load_state_dict(exp.upstream_state)
    return upstream.eval()


def max_difference(a: nn.Module, b: nn.Module, seed: int = 0, lengths=(16000, 11000)) -> float:
    """The largest absolute difference between the hidden states of two upstreams on random clips (eval mode)."""
    generator = torch.Generator().manual_seed(seed)
    wavs = [torch.randn(n, generator=generator) for n in lengths]
    a.eval(), b.eval()
    with torch.no_grad():
        first, second = a(wavs)["hidden_states"], b(wavs)["hidden_states"]
    if len(first) != len(second):
        return float("inf")
    return max(float((x - y).abs().max()) if x.shape == y.shape else float("inf") for x, y in zip(first, second))


# ---------------------------------------------------------------------------------------------- the command
FORMATS = ("s3prl", "hf")


def _is_experiment_file(path: Path) -> bool:
    checkpoint = load_checkpoint(path, "checkpoint", ExportError, mmap=True, safe_globals=[argparse.Namespace])
    return isinstance(checkpoint, dict) and "Args" in checkpoint


def export(source: str | os.PathLike, output: str | os.PathLike, format: Optional[str] = None,
           artifact: Optional[str] = None, verify: bool = False, overwrite: bool = False) -> dict:
    """``superb-redundancy export``: what ``source`` is decides what is written.

    - an s3prl experiment (folder or ``.ckpt`` with Args) trained with ``-f``: its fine-tuned upstream, as an
      s3prl-format file (default; :func:`export_experiment`) or, ``format="hf"``, a ``save_pretrained`` folder;
    - an s3prl-format wav2vec2 / HuBERT checkpoint or pruned artifact: a ``save_pretrained`` folder (``hf``);
    - a Hugging Face wav2vec2 / HuBERT folder: an s3prl-format stock checkpoint (``s3prl``).

    ``artifact``: the file the experiment was trained on, where its Args name a moved one. ``verify``: rebuild
    both and compare their hidden states on random clips (``max_difference`` in the summary). Returns a summary.
    """
    from superb_redundancy.models import hf as hf_models

    if format is not None and format not in FORMATS:
        raise ExportError(f"--format {format!r}; valid: {', '.join(FORMATS)}")
    path = Path(source).expanduser()
    if not path.exists():
        raise ExportError(f"not found: {path} (give an s3prl experiment, an s3prl-format checkpoint or a Hugging "
                          "Face folder)")
    out = Path(output).expanduser()
    if hf_models.is_hf_model_dir(path) or (path.is_dir() and (path / "config.json").is_file()):
        return _export_hf_folder(path, out, format, artifact, verify)
    if path.is_dir() or _is_experiment_file(path):
        return _export_experiment(path, out, format, artifact, verify, overwrite)
    return _export_checkpoint(path, out, format, artifact, verify, overwrite)


def _export_hf_folder(path: Path, out: Path, format: Optional[str], artifact: Optional[str], verify: bool) -> dict:
    """A Hugging Face folder -> an s3prl-format stock checkpoint."""
    from superb_redundancy.models import hf as hf_models, hf_convert

    if format not in (None, "s3prl"):
        raise ExportError(f"{path} is a Hugging Face folder: it exports to an s3prl-format file (--output FILE)")
    if artifact:
        raise ExportError("--source names the artifact an experiment was trained on; not used for a folder")
    written = hf_convert.hf_to_s3prl(path, out)
    summary = {"kind": "hf_to_s3prl", "output": str(written), "load_as": "%s_local" % hf_models.read_hf_config(
        path)["model_type"], "source": str(path)}
    if verify:
        from superb_redundancy.hub.install import build_upstream

        summary["max_difference"] = max_difference(build_upstream(summary["load_as"], str(written)),
                                                   hf_models.HFUpstream(path), lengths=(16000,))
    return summary


def _export_experiment(path: Path, out: Path, format: Optional[str], artifact: Optional[str], verify: bool,
                       overwrite: bool) -> dict:
    """An s3prl ``-f`` experiment -> its fine-tuned upstream, s3prl-format (default) or a ``save_pretrained`` folder."""
    from superb_redundancy.models import hf_convert

    if (format or "s3prl") == "s3prl":
        written, summary = export_experiment(path, out, source=artifact)
        summary = dict(summary, output=str(written))
        if verify:
            from superb_redundancy.hub.install import build_upstream

            summary["max_difference"] = max_difference(build_upstream(summary["load_as"], str(written)),
                                                       rebuild_upstream(path))
        return summary
    model, summary = finetuned_model(path, artifact)
    if summary["family"] not in hf_convert.CONVERTIBLE_FAMILIES:
        raise ExportError(f"{summary['checkpoint']}: a fine-tuned {summary['family'] or 'mimic'} upstream exports "
                          f"to an s3prl-format file (--output FILE) only (transformers: "
                          f"{', '.join(hf_convert.CONVERTIBLE_FAMILIES)})")
    written = hf_convert.s3prl_to_hf(summary["checkpoint"], out, overwrite=overwrite, checkpoint=model,
                                     source_label=f"the fine-tuned upstream of {summary['checkpoint']}")
    summary = dict(summary, kind="experiment_to_hf", output=str(written), load_as="hf_local")
    if verify:
        summary["max_difference"] = _compare_hf(model, written)
    return summary


def _export_checkpoint(path: Path, out: Path, format: Optional[str], artifact: Optional[str], verify: bool,
                       overwrite: bool) -> dict:
    """An s3prl-format wav2vec2 / HuBERT checkpoint or pruned artifact -> a ``save_pretrained`` folder."""
    from superb_redundancy.models import hf_convert

    if format not in (None, "hf"):
        raise ExportError(f"{path} is already an s3prl-format checkpoint: it exports to a Hugging Face folder "
                          "(--output-dir DIR)")
    if artifact:
        raise ExportError("--source names the artifact an experiment was trained on; not used for a checkpoint")
    written = hf_convert.s3prl_to_hf(path, out, overwrite=overwrite)
    summary = {"kind": "s3prl_to_hf", "output": str(written), "load_as": "hf_local", "source": str(path)}
    if verify:
        summary["max_difference"] = _compare_hf(load_checkpoint(path, "checkpoint", ExportError), written)
    return summary


def _compare_hf(checkpoint: dict, folder: Path) -> float:
    """s3prl's stock expert of a (compact) checkpoint against the converted folder, on one unpadded clip."""
    import tempfile

    from superb_redundancy.hub.install import build_upstream
    from superb_redundancy.models import hf as hf_models
    from superb_redundancy.models.families import family_of_checkpoint

    family = family_of_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as directory:
        path = torch_save(checkpoint, Path(directory) / "model.pt")
        return max_difference(build_upstream(family.local_hub_name, str(path)), hf_models.HFUpstream(folder),
                              lengths=(16000,))
