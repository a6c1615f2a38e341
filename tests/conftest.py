"""Suite-wide: the test tiers, and pytest's own ``pytester`` fixture for tests that run a pytest session of their own.

Processes the tests start get Ctrl+C's SIGINT as a terminal gives it, even where the runner itself was started with
SIGINT ignored (a background job of a non-interactive shell is), since the ignoring would pass on to them.

Plain ``python -m pytest`` runs the fast tier: tests marked ``slow``, ``browser`` or ``gpu`` are deselected. ``--all``
runs every tier (GPU tests then skip where there is no CUDA device), and ``-m EXPR`` picks tests by marker as usual,
instead of the default (``-m slow``, ``-m browser``, ``-m gpu``).
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

pytest_plugins = ["pytester"]

# Without a GPU, Triton's interpreter runs voxplug's decoding kernels (tests/evaluation/test_decode_kernels.py).
# Triton's own language functions are made interpreted or not when Triton is first imported (loading a
# transformers model imports it), and a kernel of one kind cannot call the other's: so here, before any test.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

#: The tiers left out of a plain run; each is a marker declared in pyproject.toml.
LEFT_OUT_BY_DEFAULT = ("slow", "browser", "gpu")
FAST_TIER = " and ".join(f"not {marker}" for marker in LEFT_OUT_BY_DEFAULT)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all",
        action="store_true",
        dest="all_tiers",
        help=f"run every test tier ({', '.join(LEFT_OUT_BY_DEFAULT)} too); without it and without -m, only the "
        "fast tier runs",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Without ``--all`` or ``-m``, select the fast tier (pytest applies ``markexpr`` at collection). An ignored
    SIGINT gets Python's own handler, which a started program's ``exec`` resets to the default."""
    if not config.option.all_tiers and not config.option.markexpr:
        config.option.markexpr = FAST_TIER
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config: pytest.Config) -> str:
    if config.option.all_tiers:
        return "test tiers: all (--all)"
    if config.option.markexpr == FAST_TIER:
        return f"test tiers: fast only ({FAST_TIER}); --all runs every tier"
    return f"test tiers: -m {config.option.markexpr!r}"
