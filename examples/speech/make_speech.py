"""Regenerate the bundled speech clips in examples/speech/ with espeak-ng.

Run from the repository root (needs ``espeak-ng`` and an installed voxplug)::

    python examples/speech/make_speech.py

Each language folder gets 16 kHz mono 16-bit WAV clips and a ``transcripts.tsv`` (``file<TAB>text``, with a
header row). espeak-ng is deterministic, so rerunning it with the same espeak-ng version gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxplug.data.audio import analyse_clip, check_clip, load_audio_16k
from voxplug.testing.speech import synthesize

SPEECH_DIR = Path(__file__).resolve().parent
MIN_CLIP_S = 1.5
MAX_CLIP_S = 4.0


@dataclass(frozen=True)
class Speaker:
    """One espeak-ng voice setting and the sentences it reads."""

    prefix: str
    voice: str
    rate: int
    pitch: int
    sentences: tuple[str, ...]


ENGLISH = (
    Speaker(
        "en_us",
        "en-us",
        150,
        50,
        (
            "The cat sat on the warm mat.",
            "Please close the door behind you.",
            "We walked to the park after lunch.",
            "My brother likes green apples.",
            "The train leaves at seven tonight.",
            "She reads a book every morning.",
            "Turn left at the next corner.",
            "It is raining again today.",
        ),
    ),
    Speaker(
        "en_gb",
        "en-gb",
        140,
        35,
        (
            "Can you help me carry this box?",
            "The children played in the garden.",
            "I need to buy milk and bread.",
            "Our teacher wrote a long letter.",
            "The sun is bright this afternoon.",
            "He found his keys under the chair.",
            "Dinner will be ready in ten minutes.",
            "They sing songs by the fire.",
        ),
    ),
    Speaker(
        "en_us_fast",
        "en-us",
        175,
        70,
        (
            "The dog ran across the busy road.",
            "Water the plants before you go.",
            "This coffee is too hot to drink.",
            "The red car stopped at the light.",
            "We will visit our friends on Sunday.",
            "Open the window, it is warm inside.",
            "The bird flew over the tall tree.",
            "Thank you for the lovely flowers.",
        ),
    ),
)

FRENCH = (
    Speaker(
        "fr",
        "fr-fr",
        150,
        50,
        (
            "Bonjour à tous, comment allez-vous ?",
            "Le chat dort sur le canapé.",
            "Nous allons au marché demain.",
            "Il fait très beau aujourd'hui.",
            "J'aime lire des livres le soir.",
            "La voiture rouge est dans la rue.",
        ),
    ),
)


def write_language(language_dir: Path, speakers: tuple[Speaker, ...]) -> None:
    """Replace the clips and transcripts.tsv in ``language_dir`` with freshly synthesised ones."""
    language_dir.mkdir(parents=True, exist_ok=True)
    for old_clip in language_dir.glob("*.wav"):
        old_clip.unlink()
    rows = ["file\ttext"]
    for speaker in speakers:
        paths = synthesize(
            speaker.sentences,
            language_dir,
            voice=speaker.voice,
            rate=speaker.rate,
            pitch=speaker.pitch,
            prefix=speaker.prefix,
        )
        for path, sentence in zip(paths, speaker.sentences, strict=True):
            check_bundled_clip(path)
            rows.append(f"{path.name}\t{sentence}")
    (language_dir / "transcripts.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def check_bundled_clip(path: Path) -> None:
    """Fail if a generated clip is outside the 1.5–4 s range or has any quality issue."""
    clip = load_audio_16k(path)
    if not MIN_CLIP_S <= clip.duration_s <= MAX_CLIP_S:
        raise SystemExit(f"{path}: {clip.duration_s:.2f} s is outside {MIN_CLIP_S}-{MAX_CLIP_S} s; edit the sentence")
    issues = check_clip(analyse_clip(clip.samples))
    if issues:
        raise SystemExit("\n".join(issue.describe(str(path)) for issue in issues))


def main() -> None:
    """Regenerate examples/speech/en and examples/speech/fr."""
    write_language(SPEECH_DIR / "en", ENGLISH)
    write_language(SPEECH_DIR / "fr", FRENCH)
    total_bytes = sum(path.stat().st_size for path in SPEECH_DIR.rglob("*.wav"))
    print(f"wrote {len(list(SPEECH_DIR.rglob('*.wav')))} clips, {total_bytes / 1e6:.2f} MB, under {SPEECH_DIR}")


if __name__ == "__main__":
    main()
