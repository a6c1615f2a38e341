"""Speech-to-text demo for a model fine-tuned with voxplug: a LoRA adapter (loaded onto its base) or a full model.

This one file is the ``app.py`` of the Spaces ``voxplug deploy`` creates, and what ``voxplug demo --model PATH``
runs locally, so it needs only what a Space installs (gradio, torch, transformers, peft, huggingface_hub).

Transcription is greedy. Where voxplug is installed (``voxplug demo``) it is voxplug's fast decoder (the model
family's ``transcribe``); in a Space, transformers' ``generate``, with a static key/value cache and its automatic
compilation on a GPU. Both give the same tokens. Whisper transcribes clips over its 30 s window with transformers'
long-form decoding (30 s windows one after the other, each starting where the last one's timestamps end).

Settings (Space variables, or environment variables locally):

- ``VOXPLUG_MODEL_ID``: the model, a Hub repo id or a local folder (required);
- ``VOXPLUG_BASE_MODEL_ID``: the base model of an adapter (default: ``base_model`` from the model's
  ``voxplug.json``, else ``base_model_name_or_path`` from ``adapter_config.json``);
- ``VOXPLUG_MAX_NEW_TOKENS``: the longest transcript, in tokens (default 256);
- ``VOXPLUG_MCP_SERVER=1``: also serve the Gradio MCP endpoint (off unless asked);
- ``HF_TOKEN`` (a Space *secret*): a read token, needed only when the model is private.

Protection against overload (see :class:`DemoLimits`; ``voxplug demo`` has an option for each):

- ``VOXPLUG_CONCURRENCY``: transcriptions that run at once (default 1); the others wait in the queue;
- ``VOXPLUG_QUEUE_SIZE``: requests that may wait (default 16); beyond that a visitor is told the queue is full;
- ``VOXPLUG_MAX_AUDIO_S``: the longest clip accepted, in seconds (default 60);
- ``VOXPLUG_MAX_FILE_MB``: the largest upload accepted, in MB (default 20); Gradio refuses bigger uploads before
  they reach the server's disk, and the app checks again before decoding.

The model is loaded at start-up and a failure stops the app with the reason: the demo never falls back to
serving the base model in place of the fine-tuned one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_MODEL = "VOXPLUG_MODEL_ID"
ENV_BASE_MODEL = "VOXPLUG_BASE_MODEL_ID"
ENV_MAX_NEW_TOKENS = "VOXPLUG_MAX_NEW_TOKENS"
ENV_MCP_SERVER = "VOXPLUG_MCP_SERVER"
ENV_CONCURRENCY = "VOXPLUG_CONCURRENCY"
ENV_QUEUE_SIZE = "VOXPLUG_QUEUE_SIZE"
ENV_MAX_AUDIO_S = "VOXPLUG_MAX_AUDIO_S"
ENV_MAX_FILE_MB = "VOXPLUG_MAX_FILE_MB"
MB = 1024 * 1024
SAMPLING_RATE = 16000
WHISPER_WINDOW_S = 30
"""Whisper's window: longer clips need long-form decoding."""
UPLOAD_CACHE = (300, 900)
"""Every 5 minutes, delete uploaded clips older than 15 minutes (Gradio's ``delete_cache``; also done at exit)."""
AUTO = "Auto"
DEFAULT_MAX_NEW_TOKENS = 256
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "hi": "Hindi",
}
"""Offered in the dropdown (Voxtral's languages); a model's own training languages are listed first."""


@dataclass(frozen=True)
class DemoLimits:
    """How much work the demo accepts: concurrent transcriptions, waiting requests, clip length and file size."""

    concurrency: int = 1
    queue_size: int = 16
    max_audio_s: float = 60.0
    max_file_mb: float = 20.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DemoLimits:
        """The limits set by ``VOXPLUG_CONCURRENCY``, ``VOXPLUG_QUEUE_SIZE``, ``VOXPLUG_MAX_AUDIO_S`` and
        ``VOXPLUG_MAX_FILE_MB``; unset ones keep their defaults, malformed ones stop the app with the reason."""
        environ = dict(os.environ if environ is None else environ)
        defaults = cls()
        return cls(
            concurrency=int(_env_number(environ, ENV_CONCURRENCY, defaults.concurrency, minimum=1)),
            queue_size=int(_env_number(environ, ENV_QUEUE_SIZE, defaults.queue_size, minimum=1)),
            max_audio_s=_env_number(environ, ENV_MAX_AUDIO_S, defaults.max_audio_s, minimum=0.1),
            max_file_mb=_env_number(environ, ENV_MAX_FILE_MB, defaults.max_file_mb, minimum=0.01),
        )

    def check(self, audio_path: str) -> None:
        """Refuse a file over :attr:`max_file_mb` or a clip over :attr:`max_audio_s` with a message for the visitor."""
        import gradio as gr

        size_mb = os.path.getsize(audio_path) / MB
        if size_mb > self.max_file_mb:
            raise gr.Error(
                f"This file is {size_mb:.1f} MB; this demo accepts files up to {self.max_file_mb:g} MB. "
                "Send a shorter or compressed recording.",
                print_exception=False,
            )
        seconds = audio_seconds(audio_path)
        if seconds > self.max_audio_s:
            raise gr.Error(
                f"This clip is {seconds:.1f} s long; this demo transcribes clips up to {self.max_audio_s:g} s. "
                "Trim it or record a shorter one.",
                print_exception=False,
            )


def _env_number(environ: dict[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise RuntimeError(f"{name}={raw!r}: expected at least {minimum:g}")
    return value


def audio_seconds(path: str) -> float:
    """The duration of the audio file at ``path``, from its header; a clear error for unreadable files."""
    import gradio as gr
    import soundfile

    try:
        return float(soundfile.info(path).duration)
    except (RuntimeError, soundfile.LibsndfileError):
        raise gr.Error(
            "This file is not audio this demo can read (use WAV, FLAC, OGG or MP3).", print_exception=False
        ) from None


@dataclass
class ModelSpec:
    """What the demo serves: the model, whether it is an adapter, its base, and its training languages."""

    model_ref: str
    kind: str
    base_model: str | None = None
    languages: list[str] = field(default_factory=list)


def read_model_file(model_ref: str, filename: str) -> dict[str, Any] | None:
    """A JSON file of a local model folder or a Hub repo, or None when the model has no such file."""
    local = Path(model_ref).expanduser()
    if local.is_dir():
        path = local / filename
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(model_ref, filename)).read_text(encoding="utf-8"))
    except EntryNotFoundError:
        return None


def read_model_spec(model_ref: str, base_model: str | None = None) -> ModelSpec:
    """Decide how to load ``model_ref`` from its ``voxplug.json`` and ``adapter_config.json``."""
    info = read_model_file(model_ref, "voxplug.json") or {}
    adapter_config = read_model_file(model_ref, "adapter_config.json")
    kind = info.get("kind") or ("adapter" if adapter_config else "full")
    if kind == "adapter":
        base_model = base_model or info.get("base_model") or (adapter_config or {}).get("base_model_name_or_path")
        if not base_model:
            raise RuntimeError(f"{model_ref} is an adapter but names no base model; set {ENV_BASE_MODEL}")
    return ModelSpec(model_ref, kind, base_model if kind == "adapter" else None, list(info.get("languages") or []))


def model_class(name_or_path: str) -> Any:
    """The transformers class named by the checkpoint's ``config.json`` ``architectures``."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(name_or_path)
    architecture = (config.architectures or ["VoxtralForConditionalGeneration"])[0]
    return getattr(transformers, architecture)


def inference_device() -> tuple[str, Any]:
    """``(device, dtype)``: bf16 on GPUs that have it, fp16 on older ones (T4), fp32 on CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", torch.float32
    return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_model(spec: ModelSpec) -> tuple[Any, Any]:
    """Load ``(model, processor)`` for ``spec``: the adapter applied to its base, or the full model."""
    from transformers import AutoProcessor

    device, dtype = inference_device()
    if spec.kind == "adapter":
        from peft import PeftModel

        assert spec.base_model is not None
        base = model_class(spec.base_model).from_pretrained(spec.base_model, dtype=dtype, use_kernels=False)
        model = PeftModel.from_pretrained(base, spec.model_ref)
        if not any("lora_" in name for name, _ in model.named_parameters()):
            raise RuntimeError(f"{spec.model_ref}: no LoRA weights were applied to {spec.base_model}")
        processor = AutoProcessor.from_pretrained(spec.base_model)
    else:
        model = model_class(spec.model_ref).from_pretrained(spec.model_ref, dtype=dtype, use_kernels=False)
        processor = AutoProcessor.from_pretrained(spec.model_ref)
    return model.to(device).eval(), processor


def language_choices(spec: ModelSpec) -> list[tuple[str, str]]:
    """Dropdown choices ``(label, value)``: Auto (detect), then the training languages, then the others."""
    trained = [code for code in spec.languages if code]
    others = [code for code in LANGUAGE_NAMES if code not in trained]
    choices = [("Auto (detect the language)", AUTO)]
    choices += [(f"{LANGUAGE_NAMES.get(code, code)} ({code}, fine-tuned)", code) for code in trained]
    choices += [(f"{LANGUAGE_NAMES[code]} ({code})", code) for code in others]
    return choices


def to_language(choice: str | None) -> str | None:
    """The dropdown's value as the processor wants it: an ISO 639-1 code, or None for automatic detection."""
    return None if choice in (None, "", AUTO) or str(choice).lower() == "auto" else str(choice)


def voxplug_family(spec: ModelSpec) -> Any | None:
    """voxplug's model family for ``spec``'s model, or None where voxplug is not installed (a Space)."""
    try:
        from voxplug.api import detect_family, get_plugin_host
    except ImportError:
        return None
    try:
        return detect_family(spec.base_model or spec.model_ref, get_plugin_host())()
    except Exception as exc:  # a model no installed family knows: transformers' generate serves it
        print(f"transcribing with generate: voxplug has no model family for {spec.model_ref} ({exc})")
        return None


class Transcriber:
    """A loaded model and processor, and greedy transcription of one recording.

    ``fast``: transcribe with voxplug's decoder (True), with transformers' ``generate`` (False), or with voxplug's
    where it is installed (None).
    """

    def __init__(
        self,
        spec: ModelSpec,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        limits: DemoLimits | None = None,
        *,
        fast: bool | None = None,
    ) -> None:
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self.limits = limits or DemoLimits()
        self.model, self.processor = load_model(spec)
        self.family = None if fast is False else voxplug_family(spec)
        if fast and self.family is None:
            raise RuntimeError("voxplug's decoder was asked for, but voxplug is not installed")
        self.voxtral = hasattr(self.processor, "apply_transcription_request")
        self.static_cache = self.model.device.type == "cuda"
        if self.family is None and self.static_cache:  # compile the decoding step now, not at the first request
            self.transcribe(load_silence(), None)

    def __call__(self, audio_path: str | None, language: str | None) -> str:
        """Transcribe the audio file at ``audio_path`` (``language``: a code, or Auto/None to detect it)."""
        if not audio_path:
            import gradio as gr

            raise gr.Error("Record or upload some audio first.", print_exception=False)
        self.limits.check(audio_path)
        return self.transcribe(load_audio(audio_path, SAMPLING_RATE), to_language(language))

    def transcribe(self, audio: Any, language: str | None) -> str:
        """The transcript of 16 kHz mono ``audio``."""
        if is_streaming_model(self.processor):
            return self._realtime(audio)
        long_whisper = not self.voxtral and len(audio) > SAMPLING_RATE * WHISPER_WINDOW_S
        if self.family is not None and not long_whisper:
            texts = self.family.transcribe(
                self.model, self.processor, [audio], [language], max_new_tokens=self.max_new_tokens, batch_size=1
            )
            return str(texts[0])
        return self._voxtral(audio, language) if self.voxtral else self._whisper(audio, language)

    def _realtime(self, audio: Any) -> str:
        """Voxtral Realtime on a whole clip: its processor pads the clip, and one token is emitted per 80 ms."""
        import torch

        inputs = self.processor(audio, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()

    def _generate(self, inputs: dict[str, Any], *, static: bool = True, **options: Any) -> Any:
        """Greedy ``generate``; on a GPU with a static cache (transformers then compiles the decoding step), and
        without it from then on if that fails."""
        import torch

        options.update(max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        with torch.inference_mode():
            if static and self.static_cache:
                try:
                    return self.model.generate(**inputs, **options, cache_implementation="static")
                except Exception as exc:  # a model or card transformers cannot compile: decode as usual
                    print(f"static-cache decoding failed, decoding without it: {type(exc).__name__}: {exc}")
                    self.static_cache = False
            return self.model.generate(**inputs, **options)

    def _voxtral(self, audio: Any, language: str | None) -> str:
        inputs = self.processor.apply_transcription_request(
            language=language,
            audio=[audio],
            model_id=self.spec.model_ref,
            sampling_rate=SAMPLING_RATE,
            format=["WAV"],
        )
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        output = self._generate(dict(inputs))
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()

    def _whisper(self, audio: Any, language: str | None) -> str:
        """Other families (Whisper): ``generate`` on the log-mel features; long-form past the 30 s window."""
        options: dict[str, Any] = {}
        if len(audio) > SAMPLING_RATE * WHISPER_WINDOW_S:  # every frame, and which are real: long-form decoding
            features = self.processor.feature_extractor(
                audio,
                sampling_rate=SAMPLING_RATE,
                return_tensors="pt",
                truncation=False,
                padding="longest",
                return_attention_mask=True,
            )
            mask = features["attention_mask"].to(self.model.device)
            options.update(attention_mask=mask, return_timestamps=True, static=False)
        else:  # one window, padded to 30 s
            features = self.processor.feature_extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        if language and getattr(self.model.generation_config, "is_multilingual", False):
            options.update(language=language, task="transcribe")
        input_features = features["input_features"].to(self.model.device, dtype=self.model.dtype)
        output = self._generate({"input_features": input_features}, **options)
        return self.processor.tokenizer.batch_decode(output, skip_special_tokens=True)[0].strip()


def load_silence(seconds: float = 1.0) -> Any:
    """``seconds`` of silence at 16 kHz (to warm a model up)."""
    import numpy as np

    return np.zeros(int(SAMPLING_RATE * seconds), dtype=np.float32)


def load_audio(path: str, rate: int) -> Any:
    """The file at ``path`` as mono float32 samples at ``rate`` Hz (soundfile reads it, soxr resamples)."""
    import soundfile
    import soxr

    samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return mono if file_rate == rate else soxr.resample(mono, file_rate, rate)


def is_streaming_model(processor: Any) -> bool:
    """Whether the model transcribes while the audio arrives (Voxtral Realtime's processor streams)."""
    return type(processor).__name__ == "VoxtralRealtimeProcessor"


def trained_delay_ms(spec: ModelSpec, processor: Any) -> int:
    """The delay the model was trained at: its own ``tekken.json`` (an adapter keeps one), else the processor's."""
    tekken = read_model_file(spec.model_ref, "tekken.json") or {}
    delay = (tekken.get("audio") or {}).get("transcription_delay_ms")
    return int(delay or processor.num_delay_tokens * FRAME_MS)


FRAME_MS = 80
"""Voxtral Realtime emits one token per 80 ms of audio; its delay is a whole number of these frames."""
LIVE_THREAD = "voxplug-live-stream"
LIVE_IDLE_S = 30.0
"""A live stream that receives no audio for this long ends (a visitor who left stops using the model)."""


class LiveStream:
    """One visitor's live transcription: :meth:`feed` microphone audio, read :meth:`text`, :meth:`finish` at the end.

    transformers' streaming generation runs on a background thread: ``generate`` reads mel-feature chunks from a
    generator that waits for the audio fed so far (the processor's streaming mode: the prompt with the features of
    the first ``delay + 1`` frames, then 80 ms per step), and every token it emits is kept as it comes.
    """

    def __init__(self, model: Any, processor: Any, delay_ms: int) -> None:
        import queue
        import threading

        import numpy as np

        self.model, self.processor, self.delay_ms = model, processor, delay_ms
        tokenizer, extractor = processor.tokenizer, processor.feature_extractor
        self.rate = int(extractor.sampling_rate)
        self.delay = delay_ms // FRAME_MS
        left = processor.mistral_common_audio_config.n_left_pad_tokens
        pad = tokenizer.convert_tokens_to_ids("[STREAMING_PAD]")
        self.prompt = [tokenizer.bos_token_id] + [pad] * (left + self.delay)
        frames = processor.audio_length_per_tok
        self.first_samples = ((self.delay + 1) * frames - 1) * extractor.hop_length + extractor.win_length // 2
        self.step_samples = processor.num_samples_per_audio_chunk
        self.step_hop = frames * extractor.hop_length
        self.tail = (self.delay + 12) * processor.raw_audio_length_per_tok + self.step_samples
        self.audio = np.zeros(0, dtype=np.float32)
        self.arrived: queue.Queue[Any] = queue.Queue()
        self.tokens: list[int] = []
        self.error: BaseException | None = None
        self.finished = False
        self.resampler: tuple[int, Any] | None = None  # (input rate, soxr.ResampleStream) once audio comes at another
        self.thread = threading.Thread(target=self._generate, name=LIVE_THREAD, daemon=True)
        self.thread.start()

    def feed(self, samples: Any, rate: int | None = None) -> None:
        """Add mono float32 samples, at ``rate`` (default: the processor's).

        Another rate goes through one streaming resampler for the whole stream, so the audio the model hears does
        not depend on how the browser cut it into chunks (resampling each chunk alone puts edges at every cut).
        """
        if self.finished:
            return
        if rate is not None and rate != self.rate:
            import soxr

            if self.resampler is None or self.resampler[0] != rate:
                self.resampler = (rate, soxr.ResampleStream(rate, self.rate, 1, dtype="float32"))
            samples = self.resampler[1].resample_chunk(samples.astype("float32"))
        self.arrived.put(samples)

    def text(self) -> str:
        """The transcript so far."""
        tokens = list(self.tokens)
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def finish(self, timeout: float = 120.0) -> str:
        """End the utterance with silence enough for every word to come out; wait for the model; the transcript."""
        import numpy as np

        if not self.finished:
            self.finished = True
            if self.resampler is not None:  # what the resampler still holds
                self.arrived.put(self.resampler[1].resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            self.arrived.put(np.zeros(self.tail, dtype=np.float32))
            self.arrived.put(None)
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.text()

    def _enough(self, samples: int) -> bool:
        """Wait for ``samples`` samples; False when the stream ended or no audio came for :data:`LIVE_IDLE_S`."""
        import queue

        import numpy as np

        while self.audio.shape[0] < samples:
            try:
                chunk = self.arrived.get(timeout=LIVE_IDLE_S)
            except queue.Empty:
                return False
            if chunk is None:
                self.arrived.put(None)
                return False
            self.audio = np.concatenate([self.audio, chunk])
        return True

    def _features(self) -> Any:
        device, dtype = self.model.device, self.model.dtype
        if not self._enough(self.first_samples):
            return
        first = self.processor(self.audio[: self.first_samples], is_streaming=True, return_tensors="pt")
        yield first["input_features"].to(device, dtype)
        start = (self.delay + 1) * self.step_hop - self.processor.feature_extractor.win_length // 2
        while self._enough(start + self.step_samples):
            chunk = self.audio[start : start + self.step_samples]
            step = self.processor(chunk, is_streaming=True, is_first_audio_chunk=False, return_tensors="pt")
            yield step["input_features"].to(device, dtype)
            start += self.step_hop

    def _generate(self) -> None:
        import torch

        stream = self

        class Collect:
            seen_prompt = False

            def put(self, value: Any) -> None:
                if self.seen_prompt:
                    stream.tokens.extend(int(token) for token in value.reshape(-1).tolist())
                self.seen_prompt = True

            def end(self) -> None:
                pass

        try:
            with torch.inference_mode():
                self.model.generate(
                    input_ids=torch.tensor([self.prompt], device=self.model.device),
                    input_features=self._features(),
                    num_delay_tokens=self.delay,
                    do_sample=False,
                    streamer=Collect(),
                )
        except BaseException as error:  # shown to the visitor by finish()
            self.error = error


def add_live_section(transcriber: Transcriber, default_delay_ms: int, limits: DemoLimits) -> None:
    """Live transcription from the microphone, with the delay selectable (inside the demo's Blocks)."""
    import gradio as gr
    import numpy as np

    rate = int(transcriber.processor.feature_extractor.sampling_rate)

    def listen(chunk: Any, stream: LiveStream | None, delay_ms: float) -> tuple[str, LiveStream | None]:
        if chunk is None:
            return (stream.text() if stream else ""), stream
        if stream is None:
            stream = LiveStream(transcriber.model, transcriber.processor, int(delay_ms))
        chunk_rate, samples = chunk
        samples = np.asarray(samples)
        if samples.dtype.kind == "i":
            samples = samples / np.iinfo(samples.dtype).max
        mono = samples.reshape(samples.shape[0], -1).mean(axis=1).astype(np.float32)
        if stream.audio.shape[0] / rate > limits.max_audio_s:
            return stream.text() + " [stopped: the recording limit is reached]", stream
        stream.feed(mono, int(chunk_rate))
        return stream.text(), stream

    def stop(stream: LiveStream | None) -> tuple[str, None]:
        return (stream.finish() if stream else ""), None

    def end_stream(stream: LiveStream | None) -> None:
        if stream is not None:
            stream.finish()

    with gr.Accordion("Live: transcribe while you speak", open=True):
        gr.Markdown(
            "This is a streaming model: it writes what you say about one delay after you say it. A longer delay "
            f"is more accurate. It was trained at {default_delay_ms} ms."
        )
        delay = gr.Slider(
            FRAME_MS, 2400, value=default_delay_ms, step=FRAME_MS, label="Delay (ms)", elem_id="live-delay"
        )
        microphone = gr.Audio(sources=["microphone"], streaming=True, label="Microphone", elem_id="live-audio")
        live_text = gr.Textbox(label="Live transcript", lines=4, elem_id="live-transcript")
        state = gr.State(None, delete_callback=end_stream)  # a visitor who leaves frees the model
        microphone.stream(
            listen,
            inputs=[microphone, state, delay],
            outputs=[live_text, state],
            stream_every=0.5,
            time_limit=limits.max_audio_s,
            concurrency_limit=limits.concurrency,
            api_name="live",
        )
        microphone.stop_recording(stop, inputs=[state], outputs=[live_text, state], api_name="live_stop")


def build_demo(
    model_ref: str | None = None,
    *,
    base_model: str | None = None,
    max_new_tokens: int | None = None,
    limits: DemoLimits | None = None,
) -> Any:
    """Load the model and return the Gradio Blocks app (settings default to the environment variables).

    Serve it with :func:`launch_demo` and the same ``limits`` (they default to the environment's).
    """
    import gradio as gr

    model_ref = model_ref or os.environ.get(ENV_MODEL)
    if not model_ref:
        raise RuntimeError(f"no model to serve: set {ENV_MODEL} to a Hub repo id or a local folder")
    spec = read_model_spec(model_ref, base_model or os.environ.get(ENV_BASE_MODEL) or None)
    tokens = max_new_tokens or int(os.environ.get(ENV_MAX_NEW_TOKENS) or DEFAULT_MAX_NEW_TOKENS)
    limits = limits or DemoLimits.from_env()
    transcriber = Transcriber(spec, tokens, limits)
    kind = f"LoRA adapter on {spec.base_model}" if spec.kind == "adapter" else "fine-tuned model"
    # Visitors' uploads and recordings are deleted from the server's cache after a while and when the app stops.
    with gr.Blocks(title=f"{model_ref} · speech to text", delete_cache=UPLOAD_CACHE) as demo:
        gr.Markdown(
            f"# Speech to text\n\n`{model_ref}` ({kind}). Record or upload audio, then press Transcribe. "
            f"Clips up to {limits.max_audio_s:g} s and {limits.max_file_mb:g} MB; requests wait in a queue."
        )
        with gr.Row():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio")
            language = gr.Dropdown(language_choices(spec), value=AUTO, label="Language", elem_id="language")
        button = gr.Button("Transcribe", variant="primary", elem_id="transcribe")
        transcript = gr.Textbox(label="Transcript", lines=4, elem_id="transcript")
        button.click(
            transcriber,
            inputs=[audio, language],
            outputs=transcript,
            api_name="transcribe",
            concurrency_limit=limits.concurrency,
        )
        if is_streaming_model(transcriber.processor):
            add_live_section(transcriber, trained_delay_ms(spec, transcriber.processor), limits)
    return demo


def launch_demo(demo: Any, limits: DemoLimits, **launch_options: Any) -> Any:
    """Queue ``demo`` under ``limits`` (waiting requests, concurrency) and launch it, refusing oversized uploads.

    Gradio's run history stays off (it lists and writes Hugging Face buckets with the server's own token for any
    request from loopback, and a Space's token must act for nobody but the Space), and so does its monitoring
    summary (every visitor could read the app's usage).
    """
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    options = launch_options | {"run_history": False, "enable_monitoring": False}
    return demo.launch(max_file_size=int(limits.max_file_mb * MB), **options)


def main() -> None:
    """Run the demo as a Space does: settings from the environment, MCP only when asked."""
    limits = DemoLimits.from_env()
    launch_demo(build_demo(limits=limits), limits, mcp_server=os.environ.get(ENV_MCP_SERVER) == "1")


if __name__ == "__main__":
    main()
