"""s3prl hub entries for layer-pruned models, two per model family (models.families.FAMILIES):
`-u pruned_<family> -g SPEC.yaml [-k BASE]` and `-u pruned_<family>_local -k ARTIFACT`.

One module serves every family, so a family added to FAMILIES gets its pruned entries with nothing else to write.
The entries are module-level names (``from ...pruned.hubconf import pruned_wav2vec2``), as in s3prl's hubconfs.
"""

from typing import Callable

from superb_redundancy.hub.upstreams import register_upstream
from superb_redundancy.models.families import FAMILIES, ModelFamily

from .expert import hub_entry, hub_entry_local

__all__ = sorted(name for f in FAMILIES.values() for name in (f.pruned_hub_name, f.pruned_local_hub_name))


def _entries(family: ModelFamily) -> tuple[Callable, Callable]:
    def pruned(ckpt=None, model_config=None, refresh=False, **kwargs):
        return hub_entry(family.name, ckpt, model_config, refresh)

    def pruned_local(ckpt=None, model_config=None, refresh=False, **kwargs):
        return hub_entry_local(family.name, ckpt, model_config)

    pruned.__doc__ = f"{family.name} with transformer layers dropped: -g PRUNE_SPEC.yaml [-k BASE_CHECKPOINT]"
    pruned_local.__doc__ = f"a saved pruned {family.name} artifact: -k ARTIFACT.pt [-g SPEC.yaml for compact: true]"
    for function, name in ((pruned, family.pruned_hub_name), (pruned_local, family.pruned_local_hub_name)):
        function.__name__ = function.__qualname__ = name
    return pruned, pruned_local


for _family in FAMILIES.values():
    for _entry in _entries(_family):
        globals()[_entry.__name__] = register_upstream(_entry.__name__)(_entry)
