"""The suite's tiers (tests/conftest.py): a plain run is the fast tier, ``--all`` runs every tier, ``-m`` picks."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

TIERED = """
import pytest

def test_fast():
    pass

@pytest.mark.slow
def test_slow():
    pass

@pytest.mark.browser
def test_browser():
    pass

@pytest.mark.gpu
def test_gpu():
    pass

@pytest.mark.slow
@pytest.mark.browser
def test_slow_browser():
    pass
"""


@pytest.fixture
def tiered(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytest project with the suite's conftest and markers, and one test per tier."""
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    slow: s\n    browser: b\n    gpu: g\n")
    pytester.makepyfile(test_tiers=TIERED)
    return pytester


def passed(result: pytest.RunResult) -> set[str]:
    return {line.split("::")[1].split()[0] for line in result.stdout.lines if " PASSED" in line}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), {"test_fast"}),
        (("--all",), {"test_fast", "test_slow", "test_browser", "test_gpu", "test_slow_browser"}),
        (("-m", "slow"), {"test_slow", "test_slow_browser"}),
        (("-m", "browser and not slow"), {"test_browser"}),
        (("-m", "not gpu"), {"test_fast", "test_slow", "test_browser", "test_slow_browser"}),
    ],
)
def test_tiers_select(tiered: pytest.Pytester, args: tuple[str, ...], expected: set[str]) -> None:
    result = tiered.runpytest("-p", "no:cacheprovider", "-v", *args)
    assert passed(result) == expected
    assert result.ret == 0


def test_the_header_says_which_tiers_run(tiered: pytest.Pytester) -> None:
    plain = tiered.runpytest("-p", "no:cacheprovider")
    plain.stdout.fnmatch_lines(["test tiers: fast only (*); --all runs every tier"])
    tiered.runpytest("-p", "no:cacheprovider", "--all").stdout.fnmatch_lines(["test tiers: all (--all)"])


def test_every_tier_is_a_declared_marker() -> None:
    text = PYPROJECT.read_text(encoding="utf-8")
    for marker in ("slow", "browser", "gpu"):
        assert f'"{marker}: ' in text, f"pyproject.toml declares no '{marker}' marker"
