"""The plugin host: discovery, allow/block lists, local files, typos, duplicates, ordering, tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from voxplug import hookimpl
from voxplug.data.interface import DataSource
from voxplug.errors import PluginError
from voxplug.plugins import PluginHost
from voxplug.publishing.interface import ModelCard


def run_voxplug(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``voxplug`` command as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "voxplug", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120
    )


def plugin_names(result: subprocess.CompletedProcess) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {row["name"] for row in json.loads(result.stdout)["plugins"]}


def test_builtin_plugins_come_from_the_entry_point_group(plugin_host: PluginHost) -> None:
    info = {p.name: p for p in plugin_host.plugins()}
    assert info["jsonl"].origin == "built-in"
    assert info["jsonl"].version
    assert "register_data_sources" in info["jsonl"].hooks
    assert plugin_host.extension_plugin("data source", "jsonl") == "jsonl"


def test_loading_is_idempotent(plugin_host: PluginHost) -> None:
    before = [p.name for p in plugin_host.plugins()]
    plugin_host.load()
    plugin_host.load()
    assert [p.name for p in plugin_host.plugins()] == before


def test_allow_list_empty_loads_no_entry_point_plugins() -> None:
    assert plugin_names(run_voxplug("plugins", "--json", env={"VOXPLUG_LOAD_PLUGINS": ""})) == set()


@pytest.mark.slow
def test_allow_list_and_block_list() -> None:
    assert plugin_names(run_voxplug("plugins", "--json", env={"VOXPLUG_LOAD_PLUGINS": "jsonl"})) == {"jsonl"}
    blocked = run_voxplug("plugins", "--json", env={"VOXPLUG_DISABLE_PLUGINS": "jsonl"})
    assert "jsonl" not in plugin_names(blocked)
    assert "jsonl" in json.loads(blocked.stdout)["blocked"]


def test_unknown_hook_name_is_an_error_naming_plugin_and_hook(plugin_host: PluginHost) -> None:
    class Typo:
        @hookimpl
        def befor_train(self, config, run_dir):  # typo of before_train
            pass

    with pytest.raises(PluginError, match=r"plugin 'typo' implements unknown hook 'befor_train'.*'before_train'"):
        plugin_host.register(Typo(), name="typo")
    assert not plugin_host.pm.has_plugin("typo")


def test_unknown_hook_argument_is_an_error_naming_the_plugin(plugin_host: PluginHost) -> None:
    class BadArgs:
        @hookimpl
        def before_train(self, config, rundir):
            pass

    with pytest.raises(
        PluginError, match=r"plugin 'badargs' is invalid: .*before_train\(config, rundir\).*\{'rundir'\}"
    ):
        plugin_host.register(BadArgs(), name="badargs")


def test_duplicate_extension_name_names_both_plugins(plugin_host: PluginHost, register_plugin) -> None:
    class OtherJsonl(DataSource):
        name = "jsonl"

    class Clash:
        @hookimpl
        def register_data_sources(self, register):
            register(OtherJsonl)

    register_plugin(Clash(), name="clash")
    with pytest.raises(PluginError) as excinfo:
        plugin_host.extensions("data source")
    message = str(excinfo.value)
    assert "'jsonl' is registered twice" in message
    assert "plugin 'jsonl'" in message and "plugin 'clash'" in message
    assert "OtherJsonl" in message and "JsonlSource" in message


def test_unknown_extension_name_lists_known_ones(plugin_host: PluginHost) -> None:
    with pytest.raises(PluginError, match=r"unknown data source 'jsnl'; did you mean 'jsonl'\? \(known: .*jsonl"):
        plugin_host.extension("data source", "jsnl")


def test_extension_without_a_name_is_rejected(plugin_host: PluginHost, register_plugin) -> None:
    class Nameless(DataSource):
        pass

    class Plugin:
        @hookimpl
        def register_data_sources(self, register):
            register(Nameless)

    register_plugin(Plugin(), name="nameless")
    with pytest.raises(PluginError, match="plugin 'nameless' registered data source Nameless without a name"):
        plugin_host.extensions("data source")


SCOPING_PLUGIN = """
from voxplug import hookimpl
from voxplug.data.interface import DataSource
from voxplug.plugins import get_plugin_host


class Source(DataSource):
    name = "one-test-only"


class Plugin:
    @hookimpl
    def register_data_sources(self, register):
        register(Source)


class DirectSource(DataSource):
    name = "registered-directly"


class Direct:
    @hookimpl
    def register_data_sources(self, register):
        register(DirectSource)
"""


@pytest.mark.slow
def test_register_plugin_fixture_is_scoped_to_one_test(pytester: pytest.Pytester) -> None:
    """One pytest session, tests in file order. The process-wide host a test installs (``plugin_host``) is gone in
    the next test, with whatever was registered on it; and ``register_plugin`` unregisters its plugin even from a
    host that outlives the test (a conftest may share one host across a module)."""
    pytester.makepyfile(
        test_fresh_host=SCOPING_PLUGIN
        + textwrap.dedent(
            """
            def test_registers(plugin_host, register_plugin):
                register_plugin(Plugin(), name="scoped")
                plugin_host.register(Direct(), name="direct")
                assert get_plugin_host() is plugin_host
                assert {"one-test-only", "registered-directly"} <= set(get_plugin_host().extensions("data source"))

            def test_a_test_without_the_fixtures_sees_neither():
                host = get_plugin_host()
                assert not host.pm.has_plugin("scoped") and not host.pm.has_plugin("direct")

            def test_the_next_test_sees_neither(plugin_host):
                assert not plugin_host.pm.has_plugin("scoped") and not plugin_host.pm.has_plugin("direct")
                assert not {"one-test-only", "registered-directly"} & set(plugin_host.extensions("data source"))
            """
        )
    )
    shared = pytester.mkpydir("shared")
    (shared / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest

            from voxplug.plugins import PluginHost, use_plugin_host

            @pytest.fixture(scope="module")
            def plugin_host():
                with use_plugin_host(PluginHost().load()) as host:
                    yield host
            """
        )
    )
    (shared / "test_shared_host.py").write_text(
        SCOPING_PLUGIN
        + textwrap.dedent(
            """
            def test_registers(register_plugin, plugin_host):
                register_plugin(Plugin(), name="scoped")
                assert "one-test-only" in plugin_host.extensions("data source")

            def test_the_shared_host_lost_it(plugin_host):
                assert not plugin_host.pm.has_plugin("scoped")
                assert "one-test-only" not in plugin_host.extensions("data source")
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_shared_host.py::test_registers PASSED*",
            "*test_shared_host.py::test_the_shared_host_lost_it PASSED*",
            "*test_fresh_host.py::test_registers PASSED*",
            "*test_fresh_host.py::test_a_test_without_the_fixtures_sees_neither PASSED*",
            "*test_fresh_host.py::test_the_next_test_sees_neither PASSED*",
        ]
    )


def test_hook_order_follows_tryfirst_and_trylast(plugin_host: PluginHost, register_plugin) -> None:
    class Early:
        @hookimpl(tryfirst=True)
        def model_card_sections(self, card):
            return "early"

    class Late:
        @hookimpl(trylast=True)
        def model_card_sections(self, card):
            return ["late-1", "late-2"]

    class Middle:
        @hookimpl
        def model_card_sections(self, card):
            return None

    register_plugin(Late(), name="late")
    register_plugin(Early(), name="early")
    register_plugin(Middle(), name="middle")
    assert plugin_host.model_card_sections(card=ModelCard(metadata={})) == ["early", "late-1", "late-2"]


def test_error_hook_failure_does_not_hide_the_error(plugin_host: PluginHost, register_plugin, capsys) -> None:
    class Broken:
        @hookimpl
        def on_publish_error(self, target, destination, error):
            raise RuntimeError("notifier down")

    register_plugin(Broken(), name="broken")
    plugin_host.on_publish_error(target="hub", destination="me/x", error=ValueError("upload failed"))
    assert "notifier down" in capsys.readouterr().err


def test_local_plugin_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "voxplug_plugins.py").write_text(
        textwrap.dedent(
            """
            from voxplug import hookimpl
            from voxplug.data.interface import DataSource

            class Mine(DataSource):
                name = "mine"

            @hookimpl
            def register_data_sources(register):
                register(Mine)
            """
        )
    )
    host = PluginHost().load(config_dir=tmp_path)
    assert "mine" in host.extensions("data source")
    origins = {p.name: p.origin for p in host.plugins()}
    assert origins["local:voxplug_plugins"] == "local file"


@pytest.mark.slow
def test_a_plugin_file_beside_a_config_is_announced_and_can_be_refused(tmp_path: Path) -> None:
    """Its code runs as the user, found rather than named: voxplug says so, and --no-local-plugins refuses it."""
    ran = tmp_path / "the plugin ran"
    (tmp_path / "voxplug_plugins.py").write_text(f"from pathlib import Path\nPath({str(ran)!r}).touch()\n")
    (tmp_path / "data.jsonl").write_text("")
    config = tmp_path / "run.yaml"
    config.write_text("name: demo\ndata:\n  source: jsonl\n  jsonl:\n    path: data.jsonl\n")
    show = ("config", "show", "-c", str(config), "publish.target=null")
    refused = run_voxplug(*show, "--no-local-plugins")
    assert refused.returncode == 0, refused.stderr
    assert not ran.exists() and f"not running {tmp_path / 'voxplug_plugins.py'}" in refused.stderr
    refused_by_env = run_voxplug(*show, env={"VOXPLUG_NO_LOCAL_PLUGINS": "1"})
    assert refused_by_env.returncode == 0 and not ran.exists()
    loaded = run_voxplug(*show, env={"VOXPLUG_NO_LOCAL_PLUGINS": ""})
    assert loaded.returncode == 0, loaded.stderr
    assert ran.exists()
    notice = [line for line in loaded.stderr.splitlines() if "voxplug_plugins.py" in line]
    assert len(notice) == 1 and "found beside the run config" in notice[0] and "--no-local-plugins" in notice[0]


def test_plugins_dir_option_and_local_file_with_typo(tmp_path: Path) -> None:
    (tmp_path / "notify.py").write_text(
        "from voxplug import hookimpl\n\n@hookimpl\ndef after_publsh(result):\n    pass\n"
    )
    result = run_voxplug("--plugins-dir", str(tmp_path), "plugins")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: plugin 'local:notify' implements unknown hook 'after_publsh' (did you mean 'after_publish'?)"
    ]


@pytest.mark.slow
def test_plugin_that_raises_on_import_names_itself(tmp_path: Path) -> None:
    """A real installed distribution whose entry point module raises when imported."""
    (tmp_path / "broken_voxplug_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    dist = tmp_path / "broken_voxplug_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-voxplug-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[voxplug]\nbroken = broken_voxplug_plugin\n")
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_voxplug("plugins", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason = (
        "plugin 'broken' failed to import (entry point broken = broken_voxplug_plugin in "
        "broken-voxplug-plugin 1.0): RuntimeError: boom at import"
    )
    assert result.stderr.strip() == f"error: {reason}"  # said once, though plugin commands were skipped too
    other = run_voxplug("config", "--help", env=env)  # a command that needs no plugin still runs, and says why
    assert other.returncode == 0 and other.stderr.strip() == f"warning: plugin commands were not added: {reason}"
    debug = run_voxplug("--debug", "plugins", env=env)
    assert "Traceback" in debug.stderr and debug.returncode == 1
    # Blocking the broken plugin lets everything else work.
    assert "jsonl" in plugin_names(run_voxplug("plugins", "--json", env={**env, "VOXPLUG_DISABLE_PLUGINS": "broken"}))


@pytest.mark.slow
def test_tracing_logs_hook_calls() -> None:
    result = run_voxplug("plugins", env={"VOXPLUG_TRACE_PLUGINS": "1"})
    assert result.returncode == 0
    assert "[voxplug trace] register_data_sources(register) -> jsonl" in result.stderr
