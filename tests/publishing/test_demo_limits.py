"""Demo protection on loopback: a burst of concurrent requests is served within the limits, oversized input refused.

The demo serves the tiny Voxtral (``voxplug_voxtral.tiny.build_tiny_voxtral``) with concurrency 2, a queue of 4,
clips up to 30 s and files up to 1.5 MB; each transcription is held for a moment so the burst really overlaps.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from publishing_helpers import connect

from voxplug.testing import free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HOLD_S = 3.0
BURST = 8


class ConcurrencyGauge:
    """Counts transcriptions running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = self.most = self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.active += 1
                self.calls += 1
                self.most = max(self.most, self.active)
            try:
                time.sleep(HOLD_S)
                return function(*args, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1

        return counted


@pytest.fixture(scope="module")
def demo(tiny_base: Path) -> Iterator[tuple[Any, ConcurrencyGauge]]:
    """The demo app on a free loopback port, with its transcriptions counted."""
    from voxplug_space.demo_app import DemoLimits, Transcriber, build_demo, launch_demo

    gauge = ConcurrencyGauge()
    limits = DemoLimits(concurrency=2, queue_size=4, max_audio_s=30, max_file_mb=1.5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Transcriber, "transcribe", gauge.wrap(Transcriber.transcribe))
        app = build_demo(str(tiny_base), max_new_tokens=4, limits=limits)
        launch_demo(app, limits, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            yield connect(app.local_url), gauge
        finally:
            app.close()


def wav(path: Path, seconds: float, rate: int, channels: int = 1) -> str:
    """A tone of ``seconds`` as 16-bit WAV."""
    samples = 0.1 * np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, int(rate * seconds), dtype=np.float32))
    sf.write(path, np.repeat(samples[:, None], channels, axis=1), rate, subtype="PCM_16")
    return str(path)


def transcribe(client: Any, path: str) -> Any:
    """One request; the answer, or the exception it ended with."""
    from gradio_client import handle_file

    try:
        return client.predict(handle_file(path), "en", api_name="/transcribe")
    except Exception as exc:  # the test sorts answers from refusals
        return exc


@pytest.mark.slow
def test_a_burst_is_served_within_the_limits_and_the_rest_is_told_the_queue_is_full(
    demo: tuple[Any, ConcurrencyGauge], speech_wav: Path
) -> None:
    from gradio_client.utils import QueueError

    client, gauge = demo
    with ThreadPoolExecutor(BURST) as pool:
        outcomes = list(pool.map(lambda _: transcribe(client, str(speech_wav)), range(BURST)))
    answered = [outcome for outcome in outcomes if isinstance(outcome, str)]
    refused = [outcome for outcome in outcomes if not isinstance(outcome, str)]
    assert gauge.most == 2  # two at once, never more
    assert len(answered) >= 2 + 1 and all(isinstance(exc, QueueError) for exc in refused), refused
    assert all("Queue is full" in str(exc) for exc in refused)
    assert len(answered) <= 2 + 4  # running + waiting: the queue never grows past its size
    assert isinstance(transcribe(client, str(speech_wav)), str)  # and it keeps answering afterwards


def test_a_clip_over_the_length_limit_is_refused_with_a_clear_message(
    demo: tuple[Any, ConcurrencyGauge], tmp_path: Path
) -> None:
    from gradio_client.exceptions import AppError

    client, gauge = demo
    calls = gauge.calls
    outcome = transcribe(client, wav(tmp_path / "minute.wav", 60, 8_000))  # 60 s, under 1 MB
    assert isinstance(outcome, AppError)
    assert str(outcome) == (
        "This clip is 60.0 s long; this demo transcribes clips up to 30 s. Trim it or record a shorter one."
    )
    assert gauge.calls == calls  # refused before the model ran


def test_a_file_over_the_size_limit_is_refused_by_client_and_server(
    demo: tuple[Any, ConcurrencyGauge], tmp_path: Path
) -> None:
    import httpx

    client, _gauge = demo
    big = wav(tmp_path / "big.wav", 10, 48_000, channels=2)  # 1.9 MB, under 30 s
    outcome = transcribe(client, big)
    assert isinstance(outcome, ValueError) and "exceeds the maximum file size" in str(outcome)
    response = httpx.post(f"{client.src.rstrip('/')}/gradio_api/upload", files={"files": open(big, "rb")})
    assert response.status_code == 413 and "maximum allowed size" in response.text


def test_the_app_checks_the_size_again_before_decoding(tmp_path: Path) -> None:
    """A file that reached the handler another way (a microphone stream) is checked too."""
    import gradio as gr
    from voxplug_space.demo_app import DemoLimits

    big = wav(tmp_path / "big.wav", 10, 48_000, channels=2)
    with pytest.raises(gr.Error, match=r"This file is 1\.8 MB; this demo accepts files up to 1\.5 MB"):
        DemoLimits(max_file_mb=1.5).check(big)
    DemoLimits(max_file_mb=2, max_audio_s=10).check(big)


def test_limits_come_from_the_space_variables() -> None:
    from voxplug_space.demo_app import DemoLimits

    env = {"VOXPLUG_CONCURRENCY": "3", "VOXPLUG_QUEUE_SIZE": "9", "VOXPLUG_MAX_AUDIO_S": "45"}
    env["VOXPLUG_MAX_FILE_MB"] = ""  # unset: the default
    assert DemoLimits.from_env(env) == DemoLimits(concurrency=3, queue_size=9, max_audio_s=45, max_file_mb=20)
    with pytest.raises(RuntimeError, match="VOXPLUG_QUEUE_SIZE='0': expected at least 1"):
        DemoLimits.from_env({"VOXPLUG_QUEUE_SIZE": "0"})
