"""The plugin manager: built-ins and installed plugins, loaded once, on first use.

Plugins come from the ``cgr`` entry-point group and from ``register()``. ``CGR_LOAD_PLUGINS``
(comma-separated entry-point names) restricts which installed plugins load, for reproducible
runs; ``CGR_LOAD_PLUGINS=`` (empty) loads none. A plugin that fails to import, whose hook
raises, or that implements a hook cgr does not have (a misspelt ``@hookimpl``, which pluggy
alone would ignore) is reported by name (logged, and listed by ``cgr plugins``) and the run
goes on without it; ``CGR_STRICT_PLUGINS=1`` makes that an error instead, for plugin authors.
``register()`` by hand raises on a misspelt hook straight away: its caller is right there.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import CGRError
from .record import SCORED_CHANNELS

__all__ = ["PluginError", "Registry", "Scorer", "load_plugins", "manager", "register",
           "registry", "score"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "cgr"
DEFAULT_PLUGINS = ("cgr_plugin.default_plugins",)
# Each kind's name for one entry, as messages say it ("no sandbox named ...").
ONE = {"scorers": "scorer", "extractors": "extractor", "partitions": "partition",
       "sandboxes": "sandbox", "models": "model", "normalizers": "normalizer",
       "fixed_programs": "fixed program"}
KINDS = {"register_scorers": "scorers", "register_extractors": "extractors",
         "register_partitions": "partitions", "register_sandboxes": "sandboxes",
         "register_models": "models", "register_normalizers": "normalizers",
         "register_fixed_programs": "fixed_programs"}


class PluginError(CGRError):
    """A plugin that cannot load or registers something invalid; names the plugin."""


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: Callable[[Any, str], float | None]
    channels: tuple[str, ...] = SCORED_CHANNELS
    higher_is_better: bool = True
    description: str = ""


@dataclass(frozen=True)
class Partition:
    """A subset of dataset x solver groups that ``cgr report`` summarises on its own."""

    name: str
    description: str
    keep: Callable[[dict[str, Any]], bool]  # on a group summary


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name, with where it came from."""

    entries: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS.values()})
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # plugin -> why it did not load

    def get(self, kind: str, name: str) -> Any:
        found = self.entries[kind].get(name)
        if found is None:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise PluginError(f"no {ONE[kind]} named {name!r} (registered: {known}; see "
                              "`cgr plugins`)")
        return found

    @property
    def scorers(self) -> list[Scorer]:
        return list(self.entries["scorers"].values())


_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_registry: Registry | None = None
_load_failures: dict[str, str] = {}


def _strict() -> bool:
    return os.environ.get("CGR_STRICT_PLUGINS", "") not in ("", "0")


def _fail(plugin: str, message: str) -> None:
    if _strict():
        raise PluginError(f"plugin {plugin!r}: {message}")
    log.error("cgr: plugin %r is broken and was skipped: %s", plugin, message)


def manager() -> pluggy.PluginManager:
    """The plugin manager with built-ins and installed plugins loaded (idempotent)."""
    load_plugins()
    assert _manager is not None
    return _manager


def load_plugins() -> None:
    global _manager
    with _lock:
        if _manager is not None:
            return
        pm = pluggy.PluginManager("cgr")
        pm.add_hookspecs(hookspecs)
        for module in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module), name=module)
        allowed = os.environ.get("CGR_LOAD_PLUGINS")
        wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        labels = {module: module for module in DEFAULT_PLUGINS}
        for point in entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and point.name not in wanted:
                continue
            label = labels[point.name] = f"{point.name} ({point.value})"
            try:
                pm.register(point.load(), name=point.name)
            except Exception as err:  # an installed plugin must never take the run down
                _load_failures[label] = f"{type(err).__name__}: {err}"
                _fail(label, _load_failures[label])
        while (unknown := _unknown_hook(pm)) is not None:
            plugin, why = unknown
            name = pm.get_name(plugin) or repr(plugin)
            pm.unregister(plugin)
            _load_failures[labels.get(name, name)] = why
            _fail(labels.get(name, name), why)
        _manager = pm


def _unknown_hook(pm: pluggy.PluginManager) -> tuple[Any, str] | None:
    """A plugin with a hookimpl that no hookspec declares, and why; None when there is none.

    pluggy registers such an implementation without a word (it may be a hookspec still to
    come) unless ``check_pending()`` is asked; in cgr every hookspec exists before plugins load,
    so it is a misspelt hook, and the plugin does not do what its author meant.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        known = [hook.__name__ for hook in hookspecs.HOOKS]
        unknown = sorted(caller.name for caller in pm.get_hookcallers(err.plugin) or ()
                         if not caller.has_spec())
        reasons = []
        for hook in unknown:
            close = difflib.get_close_matches(hook, known, n=1)
            reasons.append(f"hook {hook!r} is not a cgr hook" + (
                f"; did you mean {close[0]!r}?" if close else f" (hooks: {', '.join(known)})"))
        return err.plugin, "; ".join(reasons) or str(err)
    return None


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object or module by hand (tests, notebooks, scripts).

    Raises PluginError, leaving the plugin unregistered, when it implements a hook cgr does
    not have.
    """
    global _registry
    with _lock:
        pm = manager()
        pm.register(plugin, name=name)
        unknown = _unknown_hook(pm)
        if unknown is not None:
            shown = pm.get_name(unknown[0]) or repr(unknown[0])
            pm.unregister(unknown[0])
            raise PluginError(f"plugin {shown!r}: {unknown[1]}")
        _registry = None


def unregister(name: str) -> None:
    global _registry
    with _lock:
        manager().unregister(name=name)
        _registry = None


def _collector(reg: Registry, kind: str, plugin: str) -> Callable[..., None]:
    def add(name: str, obj: Any, **options: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {ONE[kind]} without a name")
        if kind == "fixed_programs":
            if not isinstance(obj, str):
                raise PluginError(f"plugin {plugin!r}: fixed program {name!r} is not a "
                                  "program's source text")
        elif not callable(obj):
            raise PluginError(f"plugin {plugin!r}: {ONE[kind]} {name!r} is not callable")
        if name in reg.entries[kind]:
            raise PluginError(f"{ONE[kind]} {name!r} is registered twice: by "
                              f"{reg.origins[(kind, name)]!r} and by {plugin!r}")
        if kind == "scorers":
            channels = tuple(options.pop("channels", None) or SCORED_CHANNELS)
            unknown = set(channels) - set(SCORED_CHANNELS)
            if unknown:
                raise PluginError(f"plugin {plugin!r}: scorer {name!r}: unknown channel "
                                  f"{sorted(unknown)[0]!r} (one of {', '.join(SCORED_CHANNELS)})")
            obj = Scorer(name, obj, channels, **options)
        elif kind == "partitions":
            obj = Partition(name, str(options.pop("description", f"from {plugin}")), obj)
        elif options:
            raise PluginError(f"plugin {plugin!r}: {ONE[kind]} {name!r}: unexpected options "
                              f"{sorted(options)}")
        reg.entries[kind][name] = obj
        reg.origins[(kind, name)] = plugin
    return add


def registry() -> Registry:
    """What every loaded plugin registered (collected once; ``register()`` refreshes it)."""
    global _registry
    with _lock:
        if _registry is not None:
            return _registry
        pm = manager()
        reg = Registry(broken=dict(_load_failures))
        for hook_name, kind in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                plugin = pm.get_name(impl.plugin) or repr(impl.plugin)
                try:
                    impl.function(register=_collector(reg, kind, plugin))
                except Exception as err:
                    reg.broken[plugin] = f"{hook_name}: {type(err).__name__}: {err}"
                    _fail(plugin, reg.broken[plugin])
        _registry = reg
        return reg


def extractor(name: str = "cgr") -> Callable[..., Any]:
    """The answer extractor registered as ``name`` (``cgr``: the built-in, which never guesses)."""
    return registry().get("extractors", name)


def sandbox(name: str = "bwrap") -> Callable[..., Any]:
    """The sandbox backend registered as ``name`` (``bwrap``: the built-in)."""
    return registry().get("sandboxes", name)


def score(record: Any, channel: str) -> dict[str, float]:
    """Every plugin scorer's value for one channel of one record (None values left out)."""
    out: dict[str, float] = {}
    for scorer in registry().scorers:
        if channel not in scorer.channels:
            continue
        try:
            value = scorer.fn(record, channel)
        except Exception as err:  # a scorer's bug costs its own number, never the run
            log.warning("cgr: scorer %r failed on item %s (%s): %s: %s", scorer.name,
                        getattr(record, "item_id", "?"), channel, type(err).__name__, err)
            continue
        if value is not None:
            out[scorer.name] = float(value)
    return out


def describe() -> Mapping[str, Any]:
    """For ``cgr plugins``: each plugin with what it registered, and the broken ones."""
    reg = registry()
    pm = manager()
    plugins: dict[str, dict[str, list[str]]] = {name: {} for name, _ in pm.list_name_plugin()}
    for (kind, entry), origin in reg.origins.items():
        plugins.setdefault(origin, {}).setdefault(kind, []).append(entry)
    return {"plugins": plugins, "broken": dict(reg.broken)}
