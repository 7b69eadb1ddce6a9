"""superb-redundancy: layer-similarity analysis, pruned and mimicked upstreams for s3prl (SUPERB).

Importing the package installs the compat import hook (:mod:`superb_redundancy.hub.compat`): whatever imports s3prl
afterwards gets the fixes first. Nothing heavy (torch, s3prl) is imported here: the public names below are
loaded on first use.

    import superb_redundancy as sr

    sr.install()                                    # every variant on s3prl.hub, our downstreams for -d
    upstream = sr.build_upstream("pruned_wav2vec2_local", "pruned.pt")
    report = sr.analyse(upstream, files)            # similarity matrices, blocks (paper section 2.1)
    plan = sr.plan_pruning(report, "knn-bi", 3)     # which layers to drop (section 2.2)
    plan.to_spec("base.pt", 3).to_yaml("spec.yaml") # for -u pruned_wav2vec2 -g spec.yaml
"""

from __future__ import annotations

import importlib

from superb_redundancy.hub import compat as _compat

_compat.install_hook()

#: public name -> the module that defines it
_PUBLIC = {
    "install": "superb_redundancy.hub.install",
    "build_upstream": "superb_redundancy.hub.install",
    "register_upstream": "superb_redundancy.hub.upstreams",
    "register_downstream": "superb_redundancy.hub.downstreams",
    "SimilaritySettings": "superb_redundancy.analysis.report",
    "SimilarityReport": "superb_redundancy.analysis.report",
    "analyse": "superb_redundancy.analysis.report",
    "plan_pruning": "superb_redundancy.pruning.plan",
    "PruningPlan": "superb_redundancy.pruning.plan",
    "PruneSpec": "superb_redundancy.pruning.spec",
    "build_pruned": "superb_redundancy.pruning.upstream",
    "save_pruned": "superb_redundancy.pruning.upstream",
    "pruning_curves": "superb_redundancy.pruning.curves.run",
    "CurveSettings": "superb_redundancy.pruning.curves.settings",
    "heal": "superb_redundancy.pruning.heal.training",
    "HealConfig": "superb_redundancy.pruning.heal.config",
    "MimicConfig": "superb_redundancy.mimic.config",
    "train_mimicker": "superb_redundancy.mimic.train",
    "load_mimic_artifact": "superb_redundancy.mimic.artifact",
    "profile_upstream": "superb_redundancy.compute.profile",
    "StudyConfig": "superb_redundancy.study.config",
    "run_study": "superb_redundancy.study.runner",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'superb_redundancy' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
