"""A publish stopped half-way (SIGTERM from a supervisor, Ctrl+C) leaves no staging folder behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from voxplug import hookimpl
from voxplug.publishing.publish import publish_model


class StopsWhileStaging:
    """Sends this process SIGTERM while the card is rendered, i.e. with the staging folder full."""

    @hookimpl
    def model_card_sections(self, card) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends


def test_sigterm_while_staging_removes_the_staging_folder(
    lora_run: Path, tmp_path: Path, register_plugin, plugin_host
) -> None:
    register_plugin(StopsWhileStaging(), name="stops-while-staging")
    with pytest.raises(KeyboardInterrupt):
        publish_model(lora_run, target="local", destination=str(tmp_path / "out"), host=plugin_host)
    assert not list(lora_run.glob(".voxplug-publish-*"))
    assert not (tmp_path / "out").exists()
