"""Language codes and speech translation rows with Whisper, through the collator and the real processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from voxplug_whisper.collator import IGNORE_INDEX, WhisperTranscriptionCollator
from voxplug_whisper.family import WhisperFamily
from voxplug_whisper.processor import whisper_tokens

from voxplug.data.interface import Example
from voxplug.data.languages import resolve_run_languages
from voxplug.errors import DataError
from voxplug.training.dataset import ExampleDataset


def row(audio: Any, text: str, language: str | None, **extra: Any) -> dict[str, Any]:
    return {"audio": audio, "text": text, "language": language, "id": extra.pop("id", "clip"), **extra}


def hf_recipe(processor: Any, text: str, language: str, task: str) -> list[int]:
    """transformers' run_speech_recognition_seq2seq labels: tokenizer(text) with its language/task prefix."""
    tokenizer = processor.tokenizer
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    try:
        return tokenizer(" " + text).input_ids[1:]
    finally:
        tokenizer.set_prefix_tokens(language=None, task=None)


def test_accepted_codes_are_the_tokenizers_language_tokens(multilingual_processor: Any, whisper_processor: Any) -> None:
    tokenizer = multilingual_processor.tokenizer
    tokens = whisper_tokens(tokenizer)
    support = tokens.language_support()
    # Whisper's language tokens are the ids between <|startoftranscript|> and <|translate|>
    language_tokens = tokenizer.convert_ids_to_tokens(list(range(tokens.sot + 1, tokens.translate)))
    assert support.codes == {token[2:-2] for token in language_tokens} and len(support.codes) == 99
    assert support.normalize("sv-SE") == "sv" and support.normalize("SV") == "sv" and support.normalize("swe") == "sv"
    assert support.normalize("jv") == "jw"  # Whisper's own code for Javanese, from transformers' language names
    assert support.normalize("he") == support.normalize("iw") == "iw"  # this vocabulary writes Hebrew <|iw|>
    english_only = whisper_tokens(whisper_processor.tokenizer).language_support()
    assert english_only.codes == {"en"} and english_only.normalize("en-GB") == "en"
    with pytest.raises(DataError, match=r"language 'fr' \(French\) is not a language an English-only Whisper accepts"):
        english_only.normalize("fr")


def test_region_codes_get_the_language_token(multilingual_processor: Any, spoken: list) -> None:
    tokens = whisper_tokens(multilingual_processor.tokenizer)
    collator = WhisperTranscriptionCollator(processor=multilingual_processor)
    batch = collator([row(spoken[0][0], spoken[0][1], code) for code in ("sv-SE", "sv_SE", "pt-BR")])
    assert batch["decoder_input_ids"][:, 1].tolist() == [tokens.languages["sv"]] * 2 + [tokens.languages["pt"]]
    decoded = multilingual_processor.tokenizer.decode(batch["decoder_input_ids"][0])
    assert decoded.startswith("<|startoftranscript|><|sv|><|transcribe|><|notimestamps|>")
    with pytest.raises(DataError, match=r"row 0 \(id='clip'\): language 'xx-notalang': 'xx' is not an ISO 639"):
        collator([row(spoken[0][0], "x", "xx-notalang")])


def test_english_only_whisper_refuses_other_languages(whisper_processor: Any, spoken: list) -> None:
    collator = WhisperTranscriptionCollator(processor=whisper_processor)
    assert collator([row(spoken[0][0], spoken[0][1], "en-GB")])["decoder_input_ids"].shape[0] == 1
    with pytest.raises(DataError, match=r"row 0 \(id='clip'\): language 'sv-SE' \(Swedish\) .*accepts: en$"):
        collator([row(spoken[0][0], "hej", "sv-SE")])


def test_translation_rows_train_the_translate_prompt(multilingual_processor: Any, spoken: list) -> None:
    """A Granary ``ast`` row: Swedish speech (``source_lang``) with its English ``answer`` as the text."""
    tokens = whisper_tokens(multilingual_processor.tokenizer)
    audio, english = spoken[0]
    translation = row(audio, english, "sv", task="translate", target_language="en")
    batch = WhisperTranscriptionCollator(processor=multilingual_processor)([translation])
    inputs, labels = batch["decoder_input_ids"][0].tolist(), batch["labels"][0].tolist()
    text_ids = multilingual_processor.tokenizer(" " + english, add_special_tokens=False).input_ids
    assert inputs == [tokens.sot, tokens.languages["sv"], tokens.translate, tokens.no_timestamps, *text_ids]
    assert labels == [IGNORE_INDEX] * 3 + text_ids + [tokens.eot]
    unmasked = WhisperTranscriptionCollator({"mask_prompt": False}, processor=multilingual_processor)([translation])
    assert unmasked["labels"][0].tolist() == hf_recipe(multilingual_processor, english, "sv", "translate")


def test_translation_only_into_english_and_only_on_multilingual_models(
    multilingual_processor: Any, whisper_processor: Any, spoken: list
) -> None:
    audio = spoken[0][0]
    multilingual = WhisperTranscriptionCollator(processor=multilingual_processor)
    with pytest.raises(DataError, match=r"row 0 \(id='clip'\): this Whisper translates only into en, not 'de'"):
        multilingual([row(audio, "Hallo", "sv", task="translate", target_language="de")])
    with pytest.raises(DataError, match="no language; this Whisper is trained with a language token"):
        multilingual([row(audio, "Hello", None, task="translate", target_language="en")])
    english_only = WhisperTranscriptionCollator(processor=whisper_processor)
    with pytest.raises(DataError, match=r"a translation row cannot be trained: an English-only Whisper \(.en\)"):
        english_only([row(audio, "Hello", "en", task="translate", target_language="en")])


def test_granary_ast_example_reaches_the_collator_as_a_translation(
    whisper_multilingual_dir: Path, multilingual_processor: Any, speech_clips: list[tuple[Path, str]]
) -> None:
    """The run's pre-launch mapping, the training dataset and the collator, on a row shaped like Granary's
    ``sv/voxpopuli/sv_ast-en.jsonl`` (``source_lang: sv``, ``target_lang: en``, ``answer``: the English text)."""
    path, english = speech_clips[0]
    example = Example(
        id="sv_voxpopuli-ast-1", text=english, language="sv-SE", audio_path=path, origin="sv_ast-en.jsonl line 1"
    )
    example.task, example.target_language = "translate", "EN"
    resolve_run_languages([example], WhisperFamily().language_support(str(whisper_multilingual_dir)))
    assert (example.language, example.target_language, example.meta["language_tag"]) == ("sv", "en", "sv-SE")
    batch = WhisperTranscriptionCollator(processor=multilingual_processor)([ExampleDataset([example])[0]])
    decoded = multilingual_processor.tokenizer.decode(batch["decoder_input_ids"][0])
    assert decoded == f"<|startoftranscript|><|sv|><|translate|><|notimestamps|> {english}"
