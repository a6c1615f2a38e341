"""Collator options are set in YAML under the collator's name in the ``model`` section, like every plugin's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxplug.errors import ConfigError, VoxplugError


@pytest.mark.slow
def test_collator_options_reach_the_collator(make_config: Any, tmp_path: Path) -> None:
    from voxplug.training.run import train

    from .conftest import validated

    config = make_config(**{"model__voxtral-transcription": {"max_text_tokens": 2}})
    with pytest.raises(VoxplugError, match=r"transcript has \d+ tokens, more than max_text_tokens=2"):
        train(validated(config, tmp_path), progress=False)


def test_bad_collator_options_are_config_errors_naming_the_key(plugin_host: Any, tmp_path: Path) -> None:
    from voxplug.config import resolve_plugin_options, validate_config

    base = {"data": {"source": "jsonl", "jsonl": {"path": "data.jsonl"}}, "model": {"family": "voxtral"}}
    bad = validate_config({**base, "model": {"voxtral-transcription": {"max_text_tokens": 0}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"model\.voxtral-transcription\.max_text_tokens"):
        resolve_plugin_options(bad, plugin_host)
    typo = validate_config({**base, "model": {"voxtral-transcriptoin": {}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean 'voxtral-transcription'\?.*model family or collator"):
        resolve_plugin_options(typo, plugin_host)
