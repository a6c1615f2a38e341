"""Fixtures for the Voxtral Realtime tests: a tiny offline checkpoint and speech spoken word by word.

Every sentence is synthesised one word at a time with espeak-ng (:func:`voxplug.testing.speech.synthesize_words`),
so every word's start and end in the clip is known to the sample: the ground truth the streaming targets and the
aligners are checked against.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: twenty sentences with twenty different first words, so no two clips can be told apart only after their start
SENTENCES = (
    "the cat sat on the mat",
    "hello world",
    "open the door please",
    "it is raining today",
    "seven green apples",
    "turn left at the corner",
    "we like to sing",
    "good morning everyone",
    "my brother plays football",
    "close the window now",
    "a bird flew away",
    "bring me some water",
    "dogs bark at night",
    "she reads old books",
    "lunch is ready",
    "nobody came home",
    "under the blue sky",
    "very small fish",
    "yellow paint dries slowly",
    "quiet mice run fast",
)


@pytest.fixture(scope="session")
def realtime_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Voxtral Realtime checkpoint folder (model + streaming processor), built once per session."""
    from voxplug_voxtral_realtime.tiny import build_tiny_voxtral_realtime

    return build_tiny_voxtral_realtime(tmp_path_factory.mktemp("realtime_tiny"))


@pytest.fixture(scope="session")
def word_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL manifest of :data:`SENTENCES` spoken word by word, each row with its exact ``words`` timings."""
    from voxplug.testing.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from voxplug.testing.speech import synthesize_words

    folder = tmp_path_factory.mktemp("word_clips")
    lines = []
    for index, sentence in enumerate(SENTENCES):
        name = f"clip_{index:03d}.wav"
        timings = synthesize_words(sentence, folder / name)
        row = {"id": f"clip-{index}", "audio_path": name, "text": sentence, "language": "en"}
        lines.append(json.dumps({**row, "words": [timing.as_dict() for timing in timings]}))
    manifest = folder / "data.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def manifest_rows(manifest: Path) -> list[dict]:
    """The manifest's rows with their audio decoded (16 kHz float32), as a collator receives them."""
    from voxplug.data.audio import load_audio_16k

    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows.append({**row, "audio": load_audio_16k(manifest.parent / row["audio_path"]).samples})
    return rows


@pytest.fixture
def one_thread():
    """Run torch on one thread for the test: on a loaded 2-core machine, two threads spin against each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
