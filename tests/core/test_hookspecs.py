"""Every hook is specified with a full docstring and documented in docs/hooks.md (datasette-style guards)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from voxplug import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
SPECS = {
    name: function
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "voxplug_spec")
}


def test_there_are_hooks_for_each_extension_type_and_stage() -> None:
    assert {
        "register_data_sources",
        "register_collators",
        "register_model_families",
        "register_trainers",
        "register_publishers",
        "register_deployers",
        "before_train",
        "after_train",
        "on_train_error",
        "on_log",
        "on_checkpoint",
        "after_evaluate",
        "model_card_sections",
        "after_publish",
    } <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_docstring_says_when_where_and_what_it_returns(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    assert re.search(r"main process|every rank", doc), f"{name}: say on which process rank it fires"
    assert re.search(r"Return", doc), f"{name}: say what it returns"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented(name: str) -> None:
    assert f"### {name}\n" in DOCS.read_text(encoding="utf-8"), f"docs/hooks.md has no '### {name}' heading"


def test_docs_describe_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^### (\w+)$", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert documented == set(SPECS)


def test_a_plugin_needs_only_hookimpl_from_voxplug(tmp_path: Path) -> None:
    """A plugin file whose one voxplug import is ``hookimpl`` loads and has its hook called."""
    from voxplug.plugins import PluginHost

    source = "from voxplug import hookimpl\n\n\n@hookimpl\ndef after_publish(result):\n    result.append('seen')\n"
    (tmp_path / "voxplug_plugins.py").write_text(source, encoding="utf-8")
    host = PluginHost().load(config_dir=tmp_path)
    calls: list[str] = []
    host.pm.hook.after_publish(result=calls)
    assert calls == ["seen"]
