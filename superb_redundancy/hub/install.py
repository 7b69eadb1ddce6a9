"""One call that makes this project visible to s3prl: the compat fixes, then both registries.

:func:`install` puts the compat import hook in place (so s3prl is imported with its fixes), sets every upstream
variant on ``s3prl.hub`` (:mod:`superb_redundancy.hub.upstreams`) and makes every downstream importable as
``s3prl.downstream.<name>.expert`` (:mod:`superb_redundancy.hub.downstreams`). The autoload
(``_superb_redundancy_autoload``), ``run_downstream.py`` and the commands call it; it is idempotent and cheap
after the first call.
:func:`build_upstream` builds any upstream s3prl.hub knows after installing, with s3prl's call convention.
"""

from __future__ import annotations

from superb_redundancy.hub import compat, downstreams, upstreams
from superb_redundancy.hub.upstreams import UPSTREAMS
from superb_redundancy.core.errors import UserError

__all__ = ["install", "hub_factory", "build_upstream", "check_stock_checkpoint"]


def install() -> list[str]:
    """Apply the compat hook, register every upstream variant on ``s3prl.hub`` and every downstream under
    ``s3prl.downstream``; returns the upstream names."""
    compat.install_hook()
    names = upstreams.register()
    downstreams.install()  # -d NAME for our downstreams
    return names


def hub_factory(name: str):
    """The factory ``s3prl.hub`` holds for ``name`` once ours are installed; unknown: one line with close matches."""
    import difflib

    install()
    import s3prl.hub

    factory = getattr(s3prl.hub, name, None)
    if not callable(factory):
        options = s3prl.hub.options(only_registered_ckpt=False) + sorted(UPSTREAMS)
        close = difflib.get_close_matches(name, options, n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `superb-redundancy upstreams` lists ours"
        raise UserError(f"unknown upstream {name!r}{hint}")
    return factory


def build_upstream(name: str, ckpt: str | None = None, model_config: str | None = None, refresh: bool = False):
    """Any upstream s3prl.hub knows (ours included), built with s3prl's call convention; clear error if unknown."""
    factory = hub_factory(name)
    check_stock_checkpoint(name, ckpt)
    return factory(ckpt=ckpt, model_config=model_config, refresh=refresh)


def check_stock_checkpoint(name: str, ckpt: str | None) -> None:
    """s3prl's stock ``<family>_local`` loaders fail on a bad -k with a traceback or a bare AssertionError:
    check the file first (exists, loads as weights only, of the family, weights fit the config), in one line."""
    from pathlib import Path

    from superb_redundancy.models.families import FAMILIES

    family = next((f for f in FAMILIES.values() if f.local_hub_name == name), None)
    if family is None:
        return  # ours check their own files; other s3prl names take no local checkpoint of our families
    if not ckpt:
        raise UserError(f"{name} loads a local checkpoint: pass -k PATH (a stock {family.name} checkpoint)")
    from superb_redundancy.models.checkpoints import load_base_checkpoint

    load_base_checkpoint(Path(ckpt).expanduser(), family, mmap=True)
