"""Language codes and translation rows with Voxtral, through the registered collator and the real processor."""

from __future__ import annotations

import numpy as np
import pytest
from voxplug_voxtral.collator import voxtral_languages
from voxplug_voxtral.family import VoxtralFamily, VoxtralTranscriptionCollator

from voxplug.data.interface import Example
from voxplug.data.languages import resolve_run_languages
from voxplug.errors import DataError

AUDIO = 24


def tone(seconds: float = 1.0) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32)


def decoded_prompt(processor, ids: list[int]) -> str:
    """The row as text, the 375 audio placeholders left out."""
    return processor.tokenizer.decode([token for token in ids if token != AUDIO])


def test_codes_are_those_mistral_commons_transcription_request_takes() -> None:
    import pycountry
    from mistral_common.protocol.transcription.request import TranscriptionRequest
    from pydantic import ValidationError

    codes = voxtral_languages().codes
    assert codes is not None and {"en", "sv", "pt", "fr", "de", "hi"} <= codes
    for code in sorted(codes):
        assert TranscriptionRequest(audio=b"", language=code).language == code
    two_letter = {record.alpha_2 for record in pycountry.languages if hasattr(record, "alpha_2")}
    assert codes == two_letter  # ISO 639-1, as the request's LanguageAlpha2 field enforces
    for refused in ("sv-SE", "pt_BR", "yue", "fil"):
        assert refused not in codes
        with pytest.raises(ValidationError, match="Invalid language alpha2 code"):
            TranscriptionRequest(audio=b"", language=refused)


def test_region_codes_train_with_the_language_subtag(voxtral_processor) -> None:
    """``sv-SE`` (Common Voice), ``sv_SE`` and ``SV`` rows get the ``lang:sv`` prompt instead of crashing the batch."""
    collator = VoxtralTranscriptionCollator(processor=voxtral_processor)
    spellings = ["sv-SE", "sv_SE", "SV", "sv", "pt-BR"]
    rows = [{"audio": tone(), "text": "hej", "language": code, "id": code} for code in spellings]
    batch = collator(rows)
    prompts = [decoded_prompt(voxtral_processor, batch["input_ids"][index].tolist()) for index in range(len(rows))]
    for prompt in prompts[:4]:
        assert prompt.startswith("<s>[INST][BEGIN_AUDIO][/INST]lang:sv[TRANSCRIBE]hej</s>")
    assert prompts[4].startswith("<s>[INST][BEGIN_AUDIO][/INST]lang:pt[TRANSCRIBE]hej</s>")
    assert len({tuple(batch["input_ids"][index].tolist()) for index in range(4)}) == 1
    inference = collator.collate.inference_batch([tone()], ["en-GB"])
    assert decoded_prompt(voxtral_processor, inference["input_ids"][0].tolist()).endswith("lang:en[TRANSCRIBE]")


def test_a_code_voxtral_cannot_take_names_the_row_and_the_accepted_codes(voxtral_processor) -> None:
    collator = VoxtralTranscriptionCollator(processor=voxtral_processor)
    rows = [{"audio": tone(), "text": "x", "language": "en", "id": "a"}]
    rows.append({"audio": tone(), "text": "x", "language": "yue", "id": "b"})
    with pytest.raises(DataError, match=r"row 1 \(id='b'\): language 'yue' \(Yue Chinese\) is not a language Voxtral "):
        collator(rows)
    with pytest.raises(DataError, match=r"accepts: aa, ab, .*\bsv\b.*, zu"):
        collator(rows)
    with pytest.raises(DataError, match="'zz' is not an ISO 639 language code"):
        collator([{"audio": tone(), "text": "x", "language": "zz"}])


def test_translation_rows_are_refused_not_trained_as_transcripts(voxtral_processor) -> None:
    """A Granary ``ast`` row: Swedish speech, English text. Voxtral has no translation prompt to train."""
    collator = VoxtralTranscriptionCollator(processor=voxtral_processor)
    row = {"audio": tone(), "text": "Hello", "language": "sv", "task": "translate", "target_language": "en"}
    with pytest.raises(DataError, match=r"row 0: a translation row cannot be trained: .*lang:xx\[TRANSCRIBE\]"):
        collator([row])
    example = Example(id="sv-ast-1", text="Hello", language="sv", origin="sv_ast-en.jsonl line 1")
    example.task, example.target_language = "translate", "en"
    with pytest.raises(DataError, match=r"^sv_ast-en.jsonl line 1: a translation row .*model.family=whisper"):
        resolve_run_languages([example], VoxtralFamily().language_support("any"))
