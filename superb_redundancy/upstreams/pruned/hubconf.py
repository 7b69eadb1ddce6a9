"""s3prl hub entries for layer-pruned models, two per model family (models.families.FAMILIES):
`-u pruned_<family> -g SPEC.yaml [-k BASE]` and `-u pruned_<family>_local -k ARTIFACT`.

One module serves every family, so a family added to FAMILIES gets its pruned entries with nothing else to write.
The entries are module-level names (``from ...pruned.hubconf import pruned_wav2vec2``), as in s3prl's hubconfs.
"""

from typing import Callable

from superb_redundancy.hub.upstreams import register_upstream
from superb_redundancy.models.families import FAMILIES

from .expert import hub_entry, hub_entry_local

__all__ = sorted(name for family in FAMILIES for name in (f"pruned_{family}", f"pruned_{family}_local"))


def _entries(family: str) -> tuple[Callable, Callable]:
    def pruned(ckpt=None, model_config=None, refresh=False, **kwargs):
        return hub_entry(family, ckpt, model_config, refresh)

    def pruned_local(ckpt=None, model_config=None, refresh=False, **kwargs):
        return hub_entry_local(family, ckpt, model_config)

    pruned.__doc__ = f"{family} with transformer layers dropped: -g PRUNE_SPEC.yaml [-k BASE_CHECKPOINT]"
    pruned_local.__doc__ = f"a saved pruned {family} artifact: -k ARTIFACT.pt [-g SPEC.yaml for compact: true]"
    for function, name in ((pruned, f"pruned_{family}"), (pruned_local, f"pruned_{family}_local")):
        function.__name__ = function.__qualname__ = name
    return pruned, pruned_local


for _family in FAMILIES:
    for _entry in _entries(_family):
        globals()[_entry.__name__] = register_upstream(_entry.__name__)(_entry)
