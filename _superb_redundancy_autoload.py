"""Autoload: any Python process that imports s3prl gets superb_redundancy's compat fixes and upstream variants.

The installed ``superb_redundancy_autoload.pth`` (written by setup.py) runs :func:`install` at every interpreter
start. It must stay cheap there, so this module imports nothing (``os`` and ``sys`` are loaded by then) and
only puts a finder on ``sys.meta_path``; the package, torch and s3prl are imported when s3prl is:

- ``import s3prl``: the compat fixes are applied first (``superb_redundancy.hub.compat.apply``);
- ``import s3prl.hub``: once it has executed, ``superb_redundancy.hub.install.install()`` sets every registered
  variant on it, so ``S3PRLUpstream("pruned_wav2vec2")`` and ESPnet's s3prl frontend see them without code.

``SUPERB_REDUNDANCY_AUTOLOAD=0`` (or false/no/off) turns it off; ``import superb_redundancy`` then still installs
the compat hook and ``superb_redundancy.hub.install.install()`` still registers, as before.
"""

import os
import sys

__all__ = ["ENV", "enabled", "install", "installed"]

ENV = "SUPERB_REDUNDANCY_AUTOLOAD"
_OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    """False when ``SUPERB_REDUNDANCY_AUTOLOAD`` is 0, false, no or off."""
    return os.environ.get(ENV, "1").strip().lower() not in _OFF


class _RegisterAfter:
    """The real loader of ``s3prl.hub``, plus registration once the module has executed."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):  # get_source, resource readers, ... of the real loader
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        # importlib sets the parent's attribute only after this returns; install() reads s3prl.hub
        parent = sys.modules.get("s3prl")
        if parent is not None:
            parent.hub = module
        _register()


def _register() -> None:
    try:
        from superb_redundancy.hub import install

        install.install()
    except Exception as error:  # a bug of ours must not break s3prl for every other user of this interpreter
        print(f"[superb_redundancy] autoload could not register upstream variants on s3prl.hub: {error!r} "
              f"(set {ENV}=0 to turn autoload off)", file=sys.stderr)


class _Finder:
    """Finds nothing itself: applies the fixes when s3prl is looked up and wraps the loader of s3prl.hub."""

    def __init__(self) -> None:
        self._searching: set = set()  # names this finder is resolving through the others (no recursion)

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "s3prl":
            from superb_redundancy.hub import compat

            compat.apply()
            return None
        if fullname != "s3prl.hub" or fullname in self._searching:
            return None
        self._searching.add(fullname)
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._searching.discard(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisterAfter(spec.loader)
        return spec


_FINDER = _Finder()


def installed() -> bool:
    return _FINDER in sys.meta_path


def install() -> bool:
    """Put the finder first on ``sys.meta_path`` unless turned off (idempotent); True when it is there.

    Where s3prl.hub is imported already, the fixes are applied and the variants registered now.
    """
    if not enabled():
        return False
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    if "s3prl.hub" in sys.modules:
        from superb_redundancy.hub import compat

        compat.apply()
        _register()
    return True
