"""The demo in a real headless Chromium, its microphone fed a spoken clip: the live transcript shows the words
while the recording still runs. The model is the tiny Voxtral Realtime trained on the word-by-word clips."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..app.browser_helpers import CHROMIUM, CHROMIUM_ARGS
from .test_learning import fine_tune

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, realtime_tiny_dir: Path, word_clips: Path) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fine_tune(tmp_path_factory.mktemp("trained"), realtime_tiny_dir, word_clips, collator=None).model_dir
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_url(trained: Path) -> Iterator[str]:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from voxplug_space.demo_app import DemoLimits, build_demo, launch_demo

    from voxplug.testing import free_port

    limits = DemoLimits()
    demo = build_demo(str(trained), limits=limits)
    launch_demo(demo, limits, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def spoken_wav(word_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ "open the door please", with a second of silence after it (Chromium plays the file in a loop)."""
    import numpy as np

    from voxplug.data.audio import load_audio_16k, write_wav_16k

    audio = load_audio_16k(word_clips.parent / "clip_002.wav").samples
    return write_wav_16k(tmp_path_factory.mktemp("mic") / "mic.wav", np.concatenate([audio, np.zeros(16000)]))


def test_the_live_transcript_grows_while_the_visitor_speaks(
    demo_url: str, spoken_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Words show while the recording runs, and what the page ends with is, token for token, what streaming
    generation writes for the audio the server received. The words themselves are not asserted: a starved browser
    drops microphone frames, and the tiny model is no judge of damaged audio (test_demo.py checks its tokens on
    intact audio)."""
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from voxplug_space import demo_app

    streams: list[Any] = []
    opened = demo_app.LiveStream.__init__

    def remember(self: Any, *args: Any, **kwargs: Any) -> None:
        opened(self, *args, **kwargs)
        streams.append(self)

    monkeypatch.setattr(demo_app.LiveStream, "__init__", remember)
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={spoken_wav}%noloop"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1400}, permissions=["microphone"])
            page = context.new_page()
            page.goto(demo_url)
            page.click("#live-audio button.record-button")
            transcript = page.locator("#live-transcript textarea")
            sync_api.expect(transcript).to_have_value(re.compile(r"\w"), timeout=90_000)
            assert page.locator("#live-audio button.stop-button").is_visible()  # still recording
            heard = transcript.input_value()
            page.click("#live-audio button.stop-button")
            # the stop flushes the words still in the delay: what was shown stays, and more may follow
            sync_api.expect(transcript).to_have_value(re.compile("^" + re.escape(heard.strip())), timeout=60_000)
        finally:
            browser.close()
    wait_for_live_streams_to_end()
    [stream] = streams
    received = stream.audio[: stream.audio.shape[0] - stream.tail]  # finish() appended the tail of silence
    from voxplug_voxtral_realtime.generation import transcribe_streaming

    expected = transcribe_streaming(stream.model, stream.processor, [received], delay_ms=stream.delay_ms)[0].token_ids
    assert len(expected) > 0 and stream.tokens[: len(expected)] == expected


def wait_for_live_streams_to_end(timeout_s: float = 90.0) -> None:
    """The visitor left: every live stream's thread ends (its session's state is deleted, or it goes idle)."""
    import threading
    import time

    from voxplug_space.demo_app import LIVE_THREAD

    deadline = time.monotonic() + timeout_s
    while any(thread.name == LIVE_THREAD for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "a live stream outlived its visitor"
        time.sleep(0.5)
