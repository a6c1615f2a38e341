"""Finding, loading and calling plugins.

:class:`PluginHost` owns pluggy's manager. It loads plugins once per process (lazily, idempotently: every
``accelerate launch`` rank imports it), from three places:

* the ``voxplug`` entry-point group, which is how the built-in plugins under ``plugins/`` and third-party
  packages alike are found;
* local one-off files: a ``voxplug_plugins.py`` beside the run config, or every ``*.py`` of a plugins folder
  (``--plugins-dir`` or ``VOXPLUG_PLUGINS_DIR``). The file beside a config is found, not named by the user, so
  loading it is announced on stderr, and ``--no-local-plugins`` (``VOXPLUG_NO_LOCAL_PLUGINS=1``) refuses it;
* objects registered by code (tests use :meth:`PluginHost.register`).

Environment variables:

* ``VOXPLUG_LOAD_PLUGINS``: comma-separated allow-list of entry-point names; set but empty loads none;
* ``VOXPLUG_DISABLE_PLUGINS``: comma-separated block-list;
* ``VOXPLUG_TRACE_PLUGINS=1``: log every hook call and its result to stderr;
* ``VOXPLUG_NO_LOCAL_PLUGINS=1``: never run a ``voxplug_plugins.py`` found beside a run config.

Core code calls hooks through the typed methods at the bottom of :class:`PluginHost`, never ``pm.hook``
directly.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from voxplug import hookspecs
from voxplug.errors import PluginError

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.extension import Extension
    from voxplug.publishing.interface import DeployResult, ModelCard, PublishResult

ENTRY_POINT_GROUP = "voxplug"
LOCAL_PLUGIN_FILE = "voxplug_plugins.py"
ENV_LOAD = "VOXPLUG_LOAD_PLUGINS"
ENV_DISABLE = "VOXPLUG_DISABLE_PLUGINS"
ENV_TRACE = "VOXPLUG_TRACE_PLUGINS"
ENV_PLUGINS_DIR = "VOXPLUG_PLUGINS_DIR"
ENV_NO_LOCAL_PLUGINS = "VOXPLUG_NO_LOCAL_PLUGINS"

#: Extension type -> the registration hook that hands its classes over.
EXTENSION_HOOKS: dict[str, str] = {
    "data source": "register_data_sources",
    "collator": "register_collators",
    "model family": "register_model_families",
    "training method": "register_training_methods",
    "publisher": "register_publishers",
    "deployer": "register_deployers",
    "text scrubber": "register_text_scrubbers",
    "aligner": "register_aligners",
}

#: Extension types under their old names: still accepted by :meth:`PluginHost.extension`, with a DeprecationWarning.
RENAMED_EXTENSION_KINDS: dict[str, str] = {"trainer": "training method"}


def _current_kind(kind: str) -> str:
    if kind in RENAMED_EXTENSION_KINDS:
        new = RENAMED_EXTENSION_KINDS[kind]
        warnings.warn(f"the extension type {kind!r} is renamed {new!r}", DeprecationWarning, stacklevel=3)
        return new
    return kind


#: Registration hooks under their old names, which voxplug still calls (their specs warn whoever implements them).
RENAMED_EXTENSION_HOOKS: dict[str, tuple[str, ...]] = {"register_training_methods": ("register_trainers",)}

E = TypeVar("E", bound="Extension")


@dataclass
class PluginInfo:
    """What ``voxplug plugins`` shows about one plugin."""

    name: str
    origin: str
    version: str | None = None
    location: str = ""
    hooks: list[str] = field(default_factory=list)


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


_NOTICES_SHOWN: set[str] = set()


def _env_true(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no")


def _notice(message: str, *, key: str) -> None:
    """Print ``message`` to stderr once per process and ``key``, on the main process only."""
    if key in _NOTICES_SHOWN or os.environ.get("RANK", "0") != "0":
        return
    _NOTICES_SHOWN.add(key)
    print(message, file=sys.stderr)


class PluginHost:
    """The process's plugins, their extension classes, and typed access to every hook."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("voxplug")
        self.pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self._loaded = False
        self._extensions: dict[str, dict[str, tuple[type, str]]] | None = None
        self._tracing = bool(os.environ.get(ENV_TRACE))
        if self._tracing:
            self._enable_tracing()

    # -- loading -------------------------------------------------------------------------------------------

    def load(
        self, *, config_dir: Path | None = None, plugins_dir: Path | None = None, local_plugins: bool | None = None
    ) -> PluginHost:
        """Load entry-point plugins (once) and any local plugin files; safe to call repeatedly.

        ``local_plugins=False`` (default: refused when ``VOXPLUG_NO_LOCAL_PLUGINS`` is set) leaves a
        ``voxplug_plugins.py`` beside the config unloaded; plugin folders named explicitly still load.
        """
        if not self._loaded:
            self._load_entry_points()
            self._loaded = True
        env_dir = os.environ.get(ENV_PLUGINS_DIR)
        for folder in (plugins_dir, Path(env_dir) if env_dir else None):
            if folder is not None:
                self.load_plugins_dir(folder)
        if config_dir is not None and (config_dir / LOCAL_PLUGIN_FILE).is_file():
            allowed = local_plugins if local_plugins is not None else not _env_true(ENV_NO_LOCAL_PLUGINS)
            self._load_config_plugin(config_dir / LOCAL_PLUGIN_FILE, allowed=allowed)
        return self

    def _load_config_plugin(self, path: Path, *, allowed: bool) -> None:
        """Load the plugin file found beside a run config, saying so first (its code runs as the user), or refuse it.

        The notice is printed once per process, by the main process only (every ``accelerate launch`` rank loads).
        """
        path = path.resolve()
        if self.pm.has_plugin(f"local:{path.stem}"):
            return
        if not allowed:
            _notice(f"voxplug: not running {path} (plugin files beside a run config are refused)", key=str(path))
            return
        _notice(
            f"voxplug: running the plugin file {path} found beside the run config (its code runs with your "
            f"permissions); refuse it with --no-local-plugins or {ENV_NO_LOCAL_PLUGINS}=1",
            key=str(path),
        )
        self.load_file(path)

    def _load_entry_points(self) -> None:
        allowed = _env_names(ENV_LOAD)
        blocked = _env_names(ENV_DISABLE) or set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                self.pm.set_blocked(ep.name)
                continue
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            dist = ep.dist
            where = f"entry point {ep.name} = {ep.value}" + (f" in {dist.name} {dist.version}" if dist else "")
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must name itself, whatever it raised
                raise PluginError(
                    f"plugin {ep.name!r} failed to import ({where}): {type(exc).__name__}: {exc}"
                ) from exc
            origin = "built-in" if dist is not None and dist.name == "voxplug" else "entry point"
            info = PluginInfo(ep.name, origin, dist.version if dist else None, ep.value)
            self._register(plugin, ep.name, info)

    def load_file(self, path: Path) -> str:
        """Register the hooks of one local ``.py`` file; its plugin name is the file's stem."""
        path = Path(path).resolve()
        name = f"local:{path.stem}"
        if self.pm.has_plugin(name):
            return name
        spec = importlib.util.spec_from_file_location(f"voxplug_local_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise PluginError(f"local plugin {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise PluginError(f"local plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc
        self._register(module, name, PluginInfo(name, "local file", None, str(path)))
        return name

    def load_plugins_dir(self, folder: Path) -> list[str]:
        """Register every ``*.py`` file of ``folder`` as a local plugin."""
        folder = Path(folder)
        if not folder.is_dir():
            raise PluginError(f"plugins folder {folder} does not exist")
        return [self.load_file(path) for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module from code (tests, notebooks); returns its name."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._register(plugin, name, PluginInfo(name, "registered in code", None, repr(plugin)))
        return name

    def unregister(self, name: str) -> None:
        """Remove a plugin registered earlier."""
        self.pm.unregister(name=name)
        self._info.pop(name, None)
        self._extensions = None

    def _register(self, plugin: object, name: str, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(f"plugin {name!r} is invalid: {detail}") from exc
        try:
            self._check_hook_names(name)
        except PluginError:
            self.pm.unregister(name=name)
            raise
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(self.pm.get_plugin(name)) or [])
        self._info[name] = info
        self._extensions = None

    def _check_hook_names(self, name: str) -> None:
        """Fail on a hook implementation that matches no spec (a typo), naming plugin, hook and the closest."""
        known = [n for n in dir(hookspecs) if not n.startswith("_") and hasattr(getattr(hookspecs, n), "voxplug_spec")]
        for caller in self.pm.get_hookcallers(self.pm.get_plugin(name)) or []:
            if caller.spec is None:
                close = difflib.get_close_matches(caller.name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise PluginError(f"plugin {name!r} implements unknown hook {caller.name!r}{hint}")

    def _enable_tracing(self) -> None:
        def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
            names = ", ".join(impl.plugin_name for impl in impls)
            print(f"[voxplug trace] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

        def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
            exc = outcome.exception
            shown = f"raised {exc!r}" if exc else f"returned {outcome.get_result()!r}"[:200]
            print(f"[voxplug trace] {hook_name} {shown}", file=sys.stderr)

        self.pm.add_hookcall_monitoring(before, after)

    # -- introspection -------------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin, sorted by name."""
        return [self._info[name] for name in sorted(self._info)]

    def blocked(self) -> list[str]:
        """Entry-point plugins left out by the allow- or block-list."""
        return sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if self.pm.is_blocked(ep.name))

    # -- extensions ----------------------------------------------------------------------------------------

    def extensions(self, kind: str) -> dict[str, type]:
        """The registered classes of one extension type (see :data:`EXTENSION_HOOKS`), by name."""
        return {name: cls for name, (cls, _plugin) in self._collect()[_current_kind(kind)].items()}

    def extension(self, kind: str, name: str) -> type:
        """The class registered as ``name`` for ``kind``; an unknown name is an error listing the known ones."""
        registered = self.extensions(kind)
        if name not in registered:
            known = ", ".join(sorted(registered)) or "none (no plugin registers one)"
            close = difflib.get_close_matches(name, registered, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(f"unknown {_current_kind(kind)} {name!r}{hint} (known: {known})")
        return registered[name]

    def extension_plugin(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` for ``kind``."""
        self.extension(kind, name)
        return self._collect()[_current_kind(kind)][name][1]

    def _collect(self) -> dict[str, dict[str, tuple[type, str]]]:
        if self._extensions is None:
            self.load()
            self._extensions = {
                kind: self._collect_kind(kind, (hook, *RENAMED_EXTENSION_HOOKS.get(hook, ())))
                for kind, hook in EXTENSION_HOOKS.items()
            }
        return self._extensions

    def _collect_kind(self, kind: str, hook_names: tuple[str, ...]) -> dict[str, tuple[type, str]]:
        found: dict[str, tuple[type, str]] = {}
        impls = [(name, impl) for name in hook_names for impl in reversed(getattr(self.pm.hook, name).get_hookimpls())]
        for hook_name, impl in impls:

            def register(cls: type, _plugin: str = impl.plugin_name) -> None:
                name = getattr(cls, "name", "")
                if not name:
                    raise PluginError(f"plugin {_plugin!r} registered {kind} {cls.__name__} without a name")
                if name in found and found[name][0] is not cls:
                    other_cls, other_plugin = found[name]
                    raise PluginError(
                        f"{kind} name {name!r} is registered twice: by plugin {other_plugin!r} "
                        f"({other_cls.__module__}.{other_cls.__qualname__}) and by plugin {_plugin!r} "
                        f"({cls.__module__}.{cls.__qualname__})"
                    )
                found[name] = (cls, _plugin)

            if self._tracing:
                print(f"[voxplug trace] {hook_name}(register) -> {impl.plugin_name}", file=sys.stderr)
            impl.function(register=register)
        return found

    # -- typed hook calls (main process only unless the spec says otherwise) --------------------------------

    def register_commands(self, *, cli: Any) -> None:
        """Call :func:`voxplug.hookspecs.register_commands` (loading the plugins first)."""
        self.load()
        self.pm.hook.register_commands(cli=cli)

    def after_data_load(self, *, config: RunConfig, summary: dict[str, Any]) -> None:
        """Call :func:`voxplug.hookspecs.after_data_load`."""
        self.pm.hook.after_data_load(config=config, summary=summary)

    def reading_phrases(self, *, language: str) -> tuple[str, list[str]] | None:
        """The first plugin's online sentences to read aloud in ``language`` as ``(corpus, sentences)``, or None."""
        return self.pm.hook.reading_phrases(language=language)

    def before_train(self, *, config: RunConfig, run_dir: Path) -> None:
        """Call :func:`voxplug.hookspecs.before_train`."""
        self.pm.hook.before_train(config=config, run_dir=run_dir)

    def on_log(self, *, logs: dict[str, float], step: int, run_dir: Path) -> None:
        """Call :func:`voxplug.hookspecs.on_log`."""
        self.pm.hook.on_log(logs=logs, step=step, run_dir=run_dir)

    def on_checkpoint(self, *, checkpoint_dir: Path, step: int) -> None:
        """Call :func:`voxplug.hookspecs.on_checkpoint`."""
        self.pm.hook.on_checkpoint(checkpoint_dir=checkpoint_dir, step=step)

    def after_train(self, *, config: RunConfig, run_dir: Path, results: dict[str, Any]) -> None:
        """Call :func:`voxplug.hookspecs.after_train`."""
        self.pm.hook.after_train(config=config, run_dir=run_dir, results=results)

    def on_train_error(self, *, config: RunConfig, run_dir: Path, error: BaseException) -> None:
        """Call :func:`voxplug.hookspecs.on_train_error`; a failing implementation never hides ``error``."""
        self._call_error_hook(self.pm.hook.on_train_error, config=config, run_dir=run_dir, error=error)

    def after_evaluate(self, *, metrics: dict[str, float], predictions_path: Path | None, step: int | None) -> None:
        """Call :func:`voxplug.hookspecs.after_evaluate`."""
        self.pm.hook.after_evaluate(metrics=metrics, predictions_path=predictions_path, step=step)

    def model_card_sections(self, *, card: ModelCard) -> list[str]:
        """Collect the Markdown sections plugins add to ``card``, in hook-call order."""
        sections: list[str] = []
        for answer in self.pm.hook.model_card_sections(card=card):
            sections.extend([answer] if isinstance(answer, str) else answer)
        return sections

    def before_publish(self, *, target: str, model_dir: Path, destination: str) -> None:
        """Call :func:`voxplug.hookspecs.before_publish`."""
        self.pm.hook.before_publish(target=target, model_dir=model_dir, destination=destination)

    def after_publish(self, *, result: PublishResult) -> None:
        """Call :func:`voxplug.hookspecs.after_publish`."""
        self.pm.hook.after_publish(result=result)

    def on_publish_error(self, *, target: str, destination: str, error: BaseException) -> None:
        """Call :func:`voxplug.hookspecs.on_publish_error`; a failing implementation never hides ``error``."""
        self._call_error_hook(self.pm.hook.on_publish_error, target=target, destination=destination, error=error)

    def before_deploy(self, *, target: str, model_ref: str) -> None:
        """Call :func:`voxplug.hookspecs.before_deploy`."""
        self.pm.hook.before_deploy(target=target, model_ref=model_ref)

    def after_deploy(self, *, result: DeployResult) -> None:
        """Call :func:`voxplug.hookspecs.after_deploy`."""
        self.pm.hook.after_deploy(result=result)

    def on_deploy_error(self, *, target: str, model_ref: str, error: BaseException) -> None:
        """Call :func:`voxplug.hookspecs.on_deploy_error`; a failing implementation never hides ``error``."""
        self._call_error_hook(self.pm.hook.on_deploy_error, target=target, model_ref=model_ref, error=error)

    @staticmethod
    def _call_error_hook(hook: Callable[..., Any], **kwargs: Any) -> None:
        try:
            hook(**kwargs)
        except Exception as exc:  # report, but let the original error win
            print(f"voxplug: an error hook failed too: {type(exc).__name__}: {exc}", file=sys.stderr)


_host: PluginHost | None = None


def get_plugin_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        _host = PluginHost().load()
    return _host


@contextmanager
def use_plugin_host(host: PluginHost) -> Iterator[PluginHost]:
    """Make ``host`` the process-wide host inside a ``with`` block (tests use it for isolation)."""
    global _host
    previous, _host = _host, host
    try:
        yield host
    finally:
        _host = previous
