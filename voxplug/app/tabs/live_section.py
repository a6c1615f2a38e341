"""Live transcription from the microphone in the Evaluate tab, for runs of a streaming model family.

The chosen run's model is loaded into the app's own process (one model at a time, kept until another run is
listened to) and the family's live session (``ModelFamily.live_transcription``, e.g. Voxtral Realtime's) is fed
the microphone's audio every half second; the transcript grows while the person speaks, about one delay behind.
Offline families have no live session: the section says so and the tab's comparison stays the way to evaluate
them. A session reaches only the runs of its own workspace.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr

from voxplug.app.tabs import error_text
from voxplug.app.ui import PRIVATE, AppContext, Session, workspace_of
from voxplug.errors import VoxplugError

FRAME_MS = 80
MAX_LIVE_S = 300.0
"""The longest a live recording may run, in seconds (Gradio stops the stream there)."""

_loaded_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def streaming_model(model_dir: Path) -> Any:
    """The loaded model of ``model_dir`` (one at a time in this process); an offline family is an error."""
    from voxplug.evaluation.evaluate import load_model_for_evaluation
    from voxplug.plugins import get_plugin_host

    key = str(model_dir.resolve())
    with _loaded_lock:
        if key not in _loaded:
            _loaded.clear()
            loaded = load_model_for_evaluation(key, get_plugin_host())
            if not getattr(loaded.family, "streaming", False):
                raise VoxplugError(
                    f"this run's model ({loaded.family.name}) transcribes whole clips, not live: compare it with "
                    "the base model above; live transcription needs a streaming family (voxtral-realtime)"
                )
            _loaded[key] = loaded
        return _loaded[key]


def default_delay_ms(loaded: Any) -> int:
    """The delay the model's processor defaults to (its trained delay for a voxplug fine-tune)."""
    return int(loaded.processor.num_delay_tokens) * FRAME_MS


def to_16k_mono(chunk: tuple[int, Any]) -> Any:
    """A Gradio microphone chunk ``(rate, samples)`` as 16 kHz mono float32."""
    import numpy as np

    from voxplug.data.audio import resample_to_16k, to_mono

    rate, samples = chunk
    samples = np.asarray(samples)
    if samples.dtype.kind == "i":
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    return resample_to_16k(to_mono(samples.astype(np.float32)), int(rate)).astype(np.float32)


class LiveSection:
    """The live-transcription accordion of the Evaluate tab, listening with the model of the tab's chosen run."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def build(self, run: gr.Dropdown) -> None:
        """Lay the section out (inside the tab) and wire it to the tab's ``run`` dropdown."""
        with gr.Accordion("Live: transcribe from the microphone (streaming models)", open=False):
            gr.Markdown(
                "For a run of a streaming model (Voxtral Realtime): speak, and the transcript appears while you "
                "speak, one delay behind you. A longer delay is more accurate; the model was trained at its default."
            )
            self.delay = gr.Slider(
                FRAME_MS, 2400, value=480, step=FRAME_MS, label="Delay (ms)", elem_id="evaluate-live-delay"
            )
            self.microphone = gr.Audio(
                sources=["microphone"], streaming=True, label="Microphone", elem_id="evaluate-live-audio"
            )
            self.text = gr.Textbox(label="Live transcript", lines=4, elem_id="evaluate-live-transcript")
            self.stream = gr.State(None, delete_callback=self.end)  # a user who leaves frees the model
        session = self.ctx.session
        self.microphone.stream(
            self.listen,
            [session, run, self.microphone, self.stream, self.delay],
            [self.text, self.stream],
            stream_every=0.5,
            time_limit=MAX_LIVE_S,
            api_visibility=PRIVATE,
        )
        self.microphone.stop_recording(self.stop, [self.stream], [self.text, self.stream], api_visibility=PRIVATE)
        run.change(self.delay_of, [session, run], [self.delay], api_visibility=PRIVATE)

    def delay_of(self, session: Session, run: str | None) -> Any:
        """Set the slider to the run's trained delay when its model is a streaming one (and already loaded)."""
        if not run:
            return gr.skip()
        key = str((workspace_of(session).run_path(run) / "model").resolve())
        loaded = _loaded.get(key)
        return default_delay_ms(loaded) if loaded is not None else gr.skip()

    def listen(self, session: Session, run: str | None, chunk: Any, stream: Any, delay_ms: float) -> tuple[str, Any]:
        """Feed one microphone chunk to the run's live session (started on the first chunk); the transcript so far."""
        if chunk is None:
            return (stream.text() if stream is not None else ""), stream
        try:
            if stream is None:
                if not run:
                    raise VoxplugError("choose a finished run of a streaming model first")
                loaded = streaming_model(workspace_of(session).run_path(run) / "model")
                stream = loaded.family.live_transcription(loaded.model, loaded.processor, delay_ms=int(delay_ms))
            stream.feed(to_16k_mono(chunk))
            return stream.text(), stream
        except VoxplugError as exc:
            return error_text(exc), None

    @staticmethod
    def end(stream: Any) -> None:
        """The session ended (the page closed): end its live stream, so its thread stops."""
        if stream is not None:
            stream.finish(timeout=120)

    @staticmethod
    def stop(stream: Any) -> tuple[str, None]:
        """The microphone stopped: let the model emit the last words, and show the whole transcript."""
        if stream is None:
            return gr.skip(), None
        return stream.finish(timeout=120).text, None
