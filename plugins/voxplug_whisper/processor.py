"""Whisper's special tokens, processor and generation settings, built from a ``tokenizer.json``.

Whisper's vocabulary has two layouts, told apart by where ``<|endoftext|>`` sits (OpenAI's own rule is
"multilingual when the vocabulary has 51865 tokens or more", which is the same split):

==========================  =====================  ======================
token                       English-only (``.en``)  multilingual
==========================  =====================  ======================
``<|endoftext|>`` (eot)     50256                  50257
``<|startoftranscript|>``   50257                  50258
``<|en|>`` … languages      50258 …                50259 …
``<|transcribe|>``          50358                  50359
``<|notimestamps|>``        50362                  50363
``<|0.00|>`` … timestamps   50363 …                50364 …
==========================  =====================  ======================

English-only models are prompted with ``<|startoftranscript|><|notimestamps|>``; multilingual ones with
``<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>`` (or without ``<|xx|>``, which makes the model
detect the language first). Multilingual models also translate speech into English:
``<|startoftranscript|><|xx|><|translate|><|notimestamps|>`` followed by the English text, ``xx`` being the
spoken language.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxplug.api import (
    TRANSCRIBE,
    TRANSLATE,
    WITHDRAWN_CODES,
    DataError,
    LanguageSupport,
    ModelError,
    language_code_for_name,
)

ENGLISH_ONLY_EOT_ID = 50256
NUM_MEL_BINS = 80
MAX_TARGET_POSITIONS = 448
TIMESTAMP_STEP_S = 0.02
NUM_TIMESTAMPS = 1501  # <|0.00|> … <|30.00|>

_LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3})\|>$")
_NOT_LANGUAGES = {"<|nocaptions|>", "<|notimestamps|>"}


@dataclass(frozen=True)
class WhisperTokens:
    """The ids of Whisper's special tokens in one vocabulary."""

    eot: int
    sot: int
    transcribe: int
    translate: int
    no_timestamps: int
    start_of_previous: int
    languages: dict[str, int]

    @property
    def multilingual(self) -> bool:
        """Whether prompts carry a language and a task token (the multilingual vocabulary layout)."""
        return self.eot > ENGLISH_ONLY_EOT_ID

    def language_id(self, language: str, where: str = "") -> int:
        """The id of ``<|language|>``; an unknown code raises ``DataError`` listing the known ones."""
        if language not in self.languages:
            prefix = f"{where}: " if where else ""
            known = ", ".join(sorted(self.languages))
            raise DataError(f"{prefix}Whisper has no language token for {language!r} (known codes: {known})")
        return self.languages[language]

    def prompt(self, language: str | None, where: str = "", *, task: str = "transcribe") -> list[int]:
        """The decoder prompt for ``task`` (``transcribe`` or ``translate``) of speech in ``language`` (None: no
        language token, the model detects it). English-only models have no task: they only transcribe."""
        if not self.multilingual:
            if task != "transcribe":
                raise DataError(f"{where or 'row'}: an English-only Whisper cannot {task}")
            return [self.sot, self.no_timestamps]
        language_ids = [] if language is None else [self.language_id(language, where)]
        task_id = self.translate if task == "translate" else self.transcribe
        return [self.sot, *language_ids, task_id, self.no_timestamps]

    def language_support(self) -> LanguageSupport:
        """What this vocabulary takes: its ``<|xx|>`` codes (one on every row) and translation into English, or
        only ``en``.

        Codes come from the tokenizer's own language tokens; transformers' table of Whisper's language names
        supplies the aliases where Whisper's code is not the ISO one (Javanese is ``jw``, ISO ``jv``).
        """
        if not self.multilingual:
            return LanguageSupport(
                model="an English-only Whisper",
                codes=frozenset({"en"}),
                why_not_translate="an English-only Whisper (.en) has no translate task; use a multilingual one "
                "(e.g. openai/whisper-small)",
            )
        return LanguageSupport(
            model="this Whisper",
            codes=frozenset(self.languages),
            aliases=whisper_language_aliases(self.languages),
            tasks=frozenset({TRANSCRIBE, TRANSLATE}),
            translation_targets=frozenset({"en"}),
            requires_language=True,
        )


def whisper_language_aliases(codes: Any) -> dict[str, str]:
    """ISO 639 code → this vocabulary's code, where they differ: by transformers' ``TO_LANGUAGE_CODE`` names
    (Javanese is ``jw``) and by withdrawn ISO codes a vocabulary may still use (Hebrew ``iw``)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    pairs = [(language_code_for_name(name), code) for name, code in TO_LANGUAGE_CODE.items()]
    pairs += [(current, withdrawn) for withdrawn, current in WITHDRAWN_CODES.items()]
    return {iso: code for iso, code in pairs if iso is not None and code in codes and iso not in codes}


def whisper_tokens(tokenizer: Any) -> WhisperTokens:
    """Read the special token ids of a Whisper tokenizer (raises ``ModelError`` if it is not one)."""
    # Whisper's special tokens are added tokens: their table is ~1,600 entries where the vocabulary is ~51,000
    vocab = tokenizer.get_added_vocab()
    names = {
        "eot": "<|endoftext|>",
        "sot": "<|startoftranscript|>",
        "transcribe": "<|transcribe|>",
        "translate": "<|translate|>",
        "no_timestamps": "<|notimestamps|>",
        "start_of_previous": "<|startofprev|>",
    }
    if any(token not in vocab for token in names.values()):
        vocab = tokenizer.get_vocab()
    missing = [token for token in names.values() if token not in vocab]
    if missing:
        raise ModelError(f"not a Whisper tokenizer: it has no {', '.join(missing)} token")
    languages = {
        match.group(1): token_id
        for token, token_id in vocab.items()
        if token not in _NOT_LANGUAGES and (match := _LANGUAGE_TOKEN.match(token))
    }
    return WhisperTokens(**{field: vocab[token] for field, token in names.items()}, languages=languages)


def timestamp_tokens(count: int = NUM_TIMESTAMPS) -> list[str]:
    """``<|0.00|>``, ``<|0.02|>``, … : the timestamp tokens that follow ``<|notimestamps|>``."""
    return [f"<|{index * TIMESTAMP_STEP_S:.2f}|>" for index in range(count)]


def load_whisper_tokenizer(tokenizer_json: Path, vocab_size: int | None = None) -> Any:
    """A ``WhisperTokenizer`` from a tokenizers ``tokenizer.json``, with timestamp tokens up to ``vocab_size``.

    CTranslate2 and older Hub checkpoints ship a ``tokenizer.json`` without the timestamp tokens; they are
    appended here (as in current Hub tokenizers) so that every id the model can emit decodes.
    """
    from transformers import AddedToken, WhisperTokenizer

    tokenizer = WhisperTokenizer(tokenizer_file=str(tokenizer_json))
    missing = (vocab_size or len(tokenizer)) - len(tokenizer)
    if missing > 0:
        tokenizer.add_tokens(
            [AddedToken(token, special=False, normalized=False) for token in timestamp_tokens(missing)]
        )
    return tokenizer


def build_whisper_processor(tokenizer: Any, num_mel_bins: int = NUM_MEL_BINS) -> Any:
    """A ``WhisperProcessor``: 16 kHz log-mel features (``num_mel_bins`` bins, 30 s windows) plus ``tokenizer``."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=num_mel_bins), tokenizer=tokenizer)


def whisper_generation_config(
    tokens: WhisperTokens,
    *,
    suppress_tokens: list[int],
    begin_suppress_tokens: list[int],
    alignment_heads: list[list[int]] | None = None,
    max_length: int = MAX_TARGET_POSITIONS,
) -> Any:
    """The ``GenerationConfig`` Whisper's ``generate`` needs (language/task maps, prompt and suppressed ids)."""
    from transformers import GenerationConfig

    settings: dict[str, Any] = {
        "decoder_start_token_id": tokens.sot,
        "bos_token_id": tokens.eot,
        "eos_token_id": tokens.eot,
        "pad_token_id": tokens.eot,
        "no_timestamps_token_id": tokens.no_timestamps,
        "prev_sot_token_id": tokens.start_of_previous,
        "is_multilingual": tokens.multilingual,
        "suppress_tokens": list(suppress_tokens),
        "begin_suppress_tokens": list(begin_suppress_tokens),
        "max_length": max_length,
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
    }
    if alignment_heads:
        settings["alignment_heads"] = [list(head) for head in alignment_heads]
    if tokens.multilingual:
        settings["lang_to_id"] = {f"<|{code}|>": token_id for code, token_id in tokens.languages.items()}
        settings["task_to_id"] = {"transcribe": tokens.transcribe, "translate": tokens.translate}
    return GenerationConfig(**settings)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path``, naming the file in any error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
