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
        "register_training_methods",
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


def call_signature(name: str) -> str:
    """How a hook is called: its name and its arguments, as pluggy passes them (``after_publish(result)``)."""
    return f"{name}({', '.join(inspect.signature(SPECS[name]).parameters)})"


def documented_section(name: str) -> str:
    """The text under ``### name`` in docs/hooks.md, up to the next heading ('' when there is no such heading)."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.find(f"### {name}\n")
    if start < 0:
        return ""
    following = re.search(r"^#{2,3} ", text[start + 4 :], flags=re.MULTILINE)
    return text[start : start + 4 + following.start()] if following else text[start:]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented_with_its_exact_signature(name: str) -> None:
    section = documented_section(name)
    assert section, f"docs/hooks.md has no '### {name}' heading"
    assert f"`{call_signature(name)}`" in section, f"docs/hooks.md: write `{call_signature(name)}` under {name}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_implemented_by_a_plugin_in_some_test(name: str) -> None:
    """Every hook has a test whose plugin implements it, so a hook voxplug stopped calling fails a test."""
    implemented = re.compile(rf"^\s*def {name}\(", flags=re.MULTILINE)
    tests = Path(__file__).resolve().parents[1]
    found = [
        path
        for path in tests.rglob("test_*.py")
        if path.name != "test_hookspecs.py" and implemented.search(path.read_text(encoding="utf-8"))
    ]
    assert found, f"no test implements the {name} hook"


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
