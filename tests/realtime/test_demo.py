"""The demo (the Space's app.py) with a streaming model: file transcription, and live transcription whose token
stream is exactly transformers' streaming generation's, with the delay chosen by the visitor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import manifest_rows

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def test_the_demos_live_stream_emits_what_streaming_generation_does(realtime_tiny_dir: Path, word_clips: Path) -> None:
    """The app cannot import voxplug, so it streams on its own; token for token it must match the plugin's
    streaming transcription (the one evaluation uses) at the same delay, audio fed in uneven pieces."""
    from voxplug_space.demo_app import LiveStream
    from voxplug_voxtral_realtime.generation import transcribe_streaming
    from voxplug_voxtral_realtime.loading import load_realtime

    model, processor = load_realtime(realtime_tiny_dir, device="cpu")
    audio = manifest_rows(word_clips)[2]["audio"]
    for delay_ms in (160, 480):
        expected = transcribe_streaming(model, processor, [audio], delay_ms=delay_ms)[0].token_ids
        stream = LiveStream(model, processor, delay_ms)
        for start in range(0, audio.shape[0], 7000):
            stream.feed(audio[start : start + 7000])
        stream.finish()
        assert len(stream.tokens) >= len(expected) > 20
        assert stream.tokens[: len(expected)] == expected


@pytest.mark.slow
def test_a_live_stream_hears_the_same_audio_however_the_browser_cuts_it(
    realtime_tiny_dir: Path, word_clips: Path
) -> None:
    """Microphones send 48 kHz in chunks whose sizes follow the machine's load: one resampler for the whole stream
    makes what the model hears, and so what it writes, independent of the cuts."""
    import numpy as np
    import soxr
    from voxplug_space.demo_app import LiveStream
    from voxplug_voxtral_realtime.loading import load_realtime

    model, processor = load_realtime(realtime_tiny_dir, device="cpu")
    audio = soxr.resample(manifest_rows(word_clips)[2]["audio"], 16_000, 48_000).astype(np.float32)
    heard, written = [], []
    for cuts in ((24_000,), (7_919, 31_333, 4_800)):
        stream = LiveStream(model, processor, 480)
        start, index = 0, 0
        while start < audio.shape[0]:
            size = cuts[index % len(cuts)]
            stream.feed(audio[start : start + size], 48_000)
            start, index = start + size, index + 1
        stream.finish()
        heard.append(stream.audio)
        written.append(stream.tokens)
    assert heard[0].shape == heard[1].shape and np.allclose(heard[0], heard[1], atol=1e-6)
    assert written[0] == written[1] and len(written[0]) > 20


def test_the_demo_serves_files_and_a_live_microphone_for_a_streaming_model(
    realtime_tiny_dir: Path, word_clips: Path
) -> None:
    from gradio_client import handle_file
    from voxplug_space.demo_app import DemoLimits, build_demo, launch_demo

    from voxplug.testing import free_port

    from ..publishing.publishing_helpers import connect

    limits = DemoLimits()
    demo = build_demo(str(realtime_tiny_dir), limits=limits)
    launch_demo(demo, limits, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = connect(demo.local_url)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/transcribe", "/live", "/live_stop"} <= set(endpoints)
        clip = word_clips.parent / "clip_001.wav"
        assert isinstance(client.predict(handle_file(str(clip)), "Auto", api_name="/transcribe"), str)
    finally:
        demo.close()


def test_offline_demo_files_get_no_live_section(tiny_voxtral: Path) -> None:
    from voxplug_space.demo_app import Transcriber, is_streaming_model, read_model_spec

    transcriber = Transcriber(read_model_spec(str(tiny_voxtral)), max_new_tokens=2)
    assert not is_streaming_model(transcriber.processor)
