"""Speech datasets shaped like the public ones, built from their dataset cards with real espeak-ng speech.

Each layout follows what the public card and the libraries say (the project's ``reference/real-datasets.md``), not
what voxplug expects, so tests that read them meet the real column names, types, audio formats and quirks:

* ``nvidia/Granary``: manifests only; card ``configs:`` ``<lang>_<corpus>`` with splits ``asr`` and ``ast`` (no
  ``ast`` for English); NeMo rows (``audio_filepath``, ``offset``, ``duration``, ``text``, ``answer``,
  ``source_lang``, ``target_lang`` and the constant flags); VoxPopuli rows with ``duration`` null (it) or ``"None"``
  (pt) and one segment over 30 s; sharded YODAS files (``pt_asr_pt000.jsonl``, ``pt_asr_pt100.jsonl``) whose rows
  carry ``utt_id``;
* ``voxpopuli-unlabelled/`` (a local folder, not a repo): the audio Granary's VoxPopuli rows point at,
  ``voxpopuli/<lang>/<session>_<lang>_<n>.ogg``;
* ``espnet/yodas-granary``: Parquet with embedded audio; configs by language name (``Portuguese``), splits
  ``asr_only`` / ``ast``; columns ``audio``, ``text``, ``utt_id``, ``duration``, ``original_audio_id``,
  ``original_audio_offset``, ``lang``, ``task``; one manifest row is missing from it, one of its rows is in no
  manifest;
* ``mozilla-foundation/common_voice_17_0``: Common Voice 17 as Parquet: config ``sv-SE``, MP3 at 48 kHz,
  ``sentence``, ``locale`` ``sv-SE`` and the other CV columns (none of them a duration); one clip of 35 s;
* ``openslr/librispeech_asr``: config ``clean``, splits ``train.100`` / ``validation``, FLAC, upper-case ``text``
  without a final period, ``speaker_id``, ``chapter_id``, ``id``;
* ``google/fleurs``: its Parquet conversion: config ``sv_se``, WAV, ``transcription`` and ``raw_transcription``,
  ``lang_id`` / ``gender`` / ``lang_group_id`` ClassLabels;
* ``facebook/voxpopuli``: config ``it``, WAV, ``normalized_text`` / ``raw_text``, ``language`` ClassLabel;
* ``fixtures/speech-audiofolder``: ``train/`` and ``validation/`` folders of WAV files with a ``metadata.csv``
  (``file_name``, ``transcription``, ``speaker``);
* ``fixtures/speech-webdataset``: ``train-0000{0,1}.tar`` and ``validation-00000.tar`` shards of ``<key>.wav`` +
  ``<key>.txt``.

Build them into a folder with :func:`build_public_layouts` and upload them to a Hub (the test suite's loopback
server, :mod:`voxplug.testing.hub_server`) with :func:`publish_layouts`; or from a shell::

    python -m voxplug.testing.public_layouts OUT [--hub URL --token TOKEN [--namespace USER]]

Needs the ``espeak-ng`` program. The same espeak-ng version gives the same files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from voxplug.data.audio import TARGET_RATE, decode_audio, to_mono
from voxplug.testing.speech import synthesize

GRANARY = "nvidia/Granary"
YODAS_GRANARY = "espnet/yodas-granary"
COMMON_VOICE = "mozilla-foundation/common_voice_17_0"
LIBRISPEECH = "openslr/librispeech_asr"
FLEURS = "google/fleurs"
VOXPOPULI = "facebook/voxpopuli"
AUDIOFOLDER = "fixtures/speech-audiofolder"
WEBDATASET = "fixtures/speech-webdataset"
HUB_ORGS = ("nvidia", "espnet", "mozilla-foundation", "openslr", "google", "facebook", "fixtures")
"""The namespaces :func:`publish_layouts` writes to."""

LONG_CLIP_S = 35.0
"""Length of the clip over Voxtral's 30 s window that the Granary VoxPopuli and Common Voice layouts hold."""

SENTENCES = {
    "en": [
        "The weather is nice today.",
        "I would like a cup of coffee, please.",
        "Where is the train station?",
        "We are meeting at noon tomorrow.",
        "Please close the window.",
        "The children are playing in the garden.",
    ],
    "it": [
        "Oggi il tempo è bello.",
        "Vorrei una tazza di caffè, per favore.",
        "Dov'è la stazione?",
        "Ci vediamo domani a mezzogiorno.",
        "Per favore, chiudi la finestra.",
        "I bambini giocano in giardino.",
    ],
    "pt": [
        "Hoje o tempo está bom.",
        "Queria um café, por favor.",
        "Onde fica a estação?",
        "Encontramo-nos amanhã ao meio-dia.",
        "Por favor, fecha a janela.",
        "As crianças brincam no jardim.",
    ],
    "sv": [
        "Det är fint väder i dag.",
        "Jag skulle vilja ha en kopp kaffe, tack.",
        "Var ligger tågstationen?",
        "Vi ses i morgon vid lunch.",
        "Stäng fönstret, tack.",
        "Barnen leker i trädgården.",
    ],
}
"""A few parallel everyday sentences per language (the English ones are the translations Granary ``ast`` holds)."""

ESPEAK_VOICES = {"en": "en-us", "it": "it", "pt": "pt", "sv": "sv"}

GRANARY_FLAGS = {
    "decodercontext": "",
    "emotion": "<|emo:undefined|>",
    "pnc": "pnc",
    "itn": "itn",
    "timestamp": "notimestamp",
    "diarize": "nodiarize",
}
"""The constant fields of every Granary manifest row (NeMo speech-data-processor's Granary config)."""

FLEURS_LANG_IDS = [
    "af_za", "am_et", "ar_eg", "as_in", "ast_es", "az_az", "be_by", "bg_bg", "bn_in", "bs_ba", "ca_es", "ceb_ph",
    "ckb_iq", "cmn_hans_cn", "cs_cz", "cy_gb", "da_dk", "de_de", "el_gr", "en_us", "es_419", "et_ee", "fa_ir",
    "ff_sn", "fi_fi", "fil_ph", "fr_fr", "ga_ie", "gl_es", "gu_in", "ha_ng", "he_il", "hi_in", "hr_hr", "hu_hu",
    "hy_am", "id_id", "ig_ng", "is_is", "it_it", "ja_jp", "jv_id", "ka_ge", "kam_ke", "kea_cv", "kk_kz", "km_kh",
    "kn_in", "ko_kr", "ky_kg", "lb_lu", "lg_ug", "ln_cd", "lo_la", "lt_lt", "luo_ke", "lv_lv", "mi_nz", "mk_mk",
    "ml_in", "mn_mn", "mr_in", "ms_my", "mt_mt", "my_mm", "nb_no", "ne_np", "nl_nl", "nso_za", "ny_mw", "oc_fr",
    "om_et", "or_in", "pa_in", "pl_pl", "ps_af", "pt_br", "ro_ro", "ru_ru", "sd_in", "sk_sk", "sl_si", "sn_zw",
    "so_so", "sr_rs", "sv_se", "sw_ke", "ta_in", "te_in", "tg_tj", "th_th", "tr_tr", "uk_ua", "umb_ao", "ur_pk",
    "uz_uz", "vi_vn", "wo_sn", "xh_za", "yo_ng", "yue_hant_hk", "zu_za",
]  # fmt: skip
"""FLEURS' ``lang_id`` ClassLabel names, in its order."""

FLEURS_LANG_GROUPS = [
    "western_european_we", "eastern_european_ee", "central_asia_middle_north_african_cmn",
    "sub_saharan_african_ssa", "south_asian_sa", "south_east_asian_sea", "chinese_japanase_korean_cjk",
]  # fmt: skip
"""FLEURS' ``lang_group_id`` ClassLabel names."""

VOXPOPULI_LANGUAGES = ["en", "de", "fr", "es", "pl", "it", "ro", "hu", "cs", "nl", "fi", "hr", "sk", "sl", "et",
                       "lt", "en_accented"]  # fmt: skip
"""facebook/voxpopuli's ``language`` ClassLabel names, in its order."""


@dataclass
class Clip:
    """One spoken sentence: 16 kHz mono samples and what was said, in which language."""

    language: str
    text: str
    samples: np.ndarray

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / TARGET_RATE


@dataclass
class PublicLayouts:
    """Where :func:`build_public_layouts` put everything.

    ``repos`` maps each Hub repo id to its folder (what :func:`publish_layouts` uploads); ``voxpopuli_audio`` is the
    local audio root Granary's VoxPopuli rows point into; ``expected`` records facts tests check against (the rows
    over the limit, the manifest row without companion audio, ...).
    """

    root: Path
    repos: dict[str, Path] = field(default_factory=dict)
    voxpopuli_audio: Path | None = None
    expected: dict[str, Any] = field(default_factory=dict)


def build_public_layouts(root: Path) -> PublicLayouts:
    """Build every layout of the module docstring under ``root`` and return where each went."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    clips = _speak_all(root / ".speech")
    layouts = PublicLayouts(root=root)
    long_clip = _long_clip(clips["it"])
    _build_granary(layouts, clips, long_clip)
    _build_common_voice(layouts, clips["sv"], _long_clip(clips["sv"]))
    _build_librispeech(layouts, clips["en"])
    _build_fleurs(layouts, clips["sv"])
    _build_voxpopuli(layouts, clips["it"])
    _build_audiofolder(layouts, clips["en"])
    _build_webdataset(layouts, clips["en"])
    (root / "layouts.json").write_text(
        json.dumps({"repos": {k: str(v) for k, v in layouts.repos.items()}, "expected": layouts.expected}, indent=2),
        encoding="utf-8",
    )
    return layouts


def publish_layouts(layouts: PublicLayouts, endpoint: str, token: str, *, namespace: str | None = None) -> list[str]:
    """Upload each layout as a dataset repo of the Hub at ``endpoint`` (created if missing), one commit each.

    Repos go to their public ids (``nvidia/Granary``, ...), which needs a token that may write to
    :data:`HUB_ORGS`; with ``namespace`` they go to ``<namespace>/<name>`` instead (``tester/Granary``). Large files
    take the Git LFS path (Xet is turned off for these uploads: the test server speaks Git LFS). Returns the repo ids.
    """
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    xet_was_off = huggingface_hub.constants.HF_HUB_DISABLE_XET
    huggingface_hub.constants.HF_HUB_DISABLE_XET = True
    uploaded = []
    try:
        for repo_id, folder in layouts.repos.items():
            target = f"{namespace}/{repo_id.split('/')[1]}" if namespace else repo_id
            api.create_repo(target, repo_type="dataset", exist_ok=True)
            api.upload_folder(repo_id=target, repo_type="dataset", folder_path=str(folder))
            uploaded.append(target)
    finally:
        huggingface_hub.constants.HF_HUB_DISABLE_XET = xet_was_off
    return uploaded


# -- speech -----------------------------------------------------------------------------------------------------


def _speak_all(folder: Path) -> dict[str, list[Clip]]:
    clips = {}
    for language, sentences in SENTENCES.items():
        paths = synthesize(sentences, folder / language, voice=ESPEAK_VOICES[language], prefix=language)
        clips[language] = [
            Clip(language, text, to_mono(decode_audio(path)[0])) for path, text in zip(paths, sentences, strict=True)
        ]
    return clips


def _long_clip(clips: list[Clip]) -> Clip:
    """Sentences one after another, with pauses, until the clip is :data:`LONG_CLIP_S` long."""
    pause = np.zeros(TARGET_RATE // 4, dtype=np.float32)
    pieces, texts, length = [], [], 0
    while length < LONG_CLIP_S * TARGET_RATE:
        clip = clips[len(texts) % len(clips)]
        pieces += [clip.samples, pause]
        texts.append(clip.text)
        length += len(clip.samples) + len(pause)
    samples = np.concatenate(pieces)[: round(LONG_CLIP_S * TARGET_RATE)]
    return Clip(clips[0].language, " ".join(texts), samples)


def encode(clip: Clip, container: str, rate: int = TARGET_RATE) -> bytes:
    """The clip as the bytes of a ``container`` file (WAV, FLAC, OGG, MP3) at ``rate`` Hz."""
    samples = clip.samples if rate == TARGET_RATE else soxr.resample(clip.samples, TARGET_RATE, rate)
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[container]
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=container, subtype=subtype)
    return buffer.getvalue()


# -- Granary and its audio -------------------------------------------------------------------------------------


def _build_granary(layouts: PublicLayouts, clips: dict[str, list[Clip]], long_clip: Clip) -> None:
    granary = layouts.root / "granary"
    audio_root = layouts.root / "voxpopuli-unlabelled"
    it_rows = _voxpopuli_rows(audio_root, "it", "20180111-0900-PLENARY", [*clips["it"][:5], long_clip], None)
    pt_rows = _voxpopuli_rows(audio_root, "pt", "20190415-0900-PLENARY", clips["pt"][:5], "None")
    yodas_rows, companion = _yodas_rows(clips["pt"])
    files = {
        "it/voxpopuli/it_asr.jsonl": [_asr(row) for row in it_rows],
        "it/voxpopuli/it_ast-en.jsonl": [_ast(row, clips["en"]) for row in it_rows],
        "pt/voxpopuli/pt_asr.jsonl": [_asr(row) for row in pt_rows],
        "pt/voxpopuli/pt_ast-en.jsonl": [_ast(row, clips["en"]) for row in pt_rows],
        "pt/yodas/pt_asr_pt000.jsonl": [_asr(row) for row in yodas_rows[:3]],
        "pt/yodas/pt_asr_pt100.jsonl": [_asr(row) for row in yodas_rows[3:]],
        "pt/yodas/pt_ast-en_pt000.jsonl": [_ast(row, clips["en"]) for row in yodas_rows[:3]],
        "pt/yodas/pt_ast-en_pt100.jsonl": [_ast(row, clips["en"]) for row in yodas_rows[3:]],
        "en/yodas/en_asr_en000.jsonl": [_asr(row) for row in _plain_yodas_rows(clips["en"][:2], "en")],
    }
    for relative, rows in files.items():
        _write_jsonl(granary / relative, rows)
    configs = [
        _config("it_voxpopuli", {"asr": "it/voxpopuli/it_asr.jsonl", "ast": "it/voxpopuli/it_ast-en.jsonl"}),
        _config("pt_voxpopuli", {"asr": "pt/voxpopuli/pt_asr.jsonl", "ast": "pt/voxpopuli/pt_ast-en.jsonl"}),
        _config("pt_yodas", {"asr": "pt/yodas/pt_asr_pt*.jsonl", "ast": "pt/yodas/pt_ast-en_pt*.jsonl"}),
        _config("en_yodas", {"asr": "en/yodas/en_asr_en*.jsonl"}),
    ]
    _write_card(granary, {"license": "cc-by-4.0", "configs": configs}, "# Granary\n\nTranscripts only.\n")
    layouts.repos[GRANARY] = granary
    layouts.voxpopuli_audio = audio_root
    _build_yodas_granary(layouts, companion)
    layouts.expected["granary_long_row"] = {"config": "it_voxpopuli", "row": len(it_rows)}
    layouts.expected["granary_it_rows"] = len(it_rows)
    layouts.expected["yodas_missing_utt_id"] = yodas_rows[1]["utt_id"]
    layouts.expected["yodas_rows"] = len(yodas_rows)


def _voxpopuli_rows(root: Path, language: str, session: str, clips: list[Clip], duration: Any) -> list[dict]:
    """Rows pointing into VoxPopuli's unlabelled release (``voxpopuli/<lang>/<session>_<lang>_<n>.ogg``)."""
    rows = []
    for number, clip in enumerate(clips):
        relative = f"voxpopuli/{language}/{session}_{language}_{number}.ogg"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode(clip, "OGG"))
        rows.append({"audio_filepath": relative, "offset": 0.0, "duration": duration, "clip": clip, "number": number})
    return rows


def _yodas_rows(clips: list[Clip]) -> tuple[list[dict], list[dict]]:
    """Granary YODAS rows (with ``utt_id``) and the companion rows holding their audio, in the same order.

    The companion lacks the second manifest row (Granary kept a segment the audio release does not have) and
    holds one segment Granary filtered out.
    """
    rows, companion = [], []
    for number, clip in enumerate(clips[:6]):
        video = f"pt{number:03d}vid{number:04d}"[:11]
        offset = 12.5 * number
        utt_id = f"{video}-{round(offset * 100):08d}-{round((offset + clip.duration_s) * 100):08d}"
        shard = "pt000" if number < 3 else "pt100"
        row = {"audio_filepath": f"{shard}/{utt_id}.wav", "offset": offset, "duration": round(clip.duration_s, 3),
               "utt_id": utt_id, "clip": clip, "number": number}  # fmt: skip
        rows.append(row)
        if number != 1:
            companion.append({"utt_id": utt_id, "clip": clip, "video": video, "offset": offset})
        if number == 3:
            extra = f"{video}-99999999-99999999"
            companion.append({"utt_id": extra, "clip": clips[0], "video": video, "offset": 999.99})
    return rows, companion


def _plain_yodas_rows(clips: list[Clip], language: str) -> list[dict]:
    return [
        {"audio_filepath": f"{language}000/{language}{n:08d}.wav", "offset": 0.0, "duration": round(c.duration_s, 3),
         "utt_id": f"{language}{n:08d}", "clip": c, "number": n}
        for n, c in enumerate(clips)
    ]  # fmt: skip


def _asr(row: dict) -> dict:
    clip: Clip = row["clip"]
    fields = {key: row[key] for key in ("audio_filepath", "offset", "duration")}
    fields |= {"text": clip.text, "source_lang": clip.language, "target_lang": clip.language}
    if "utt_id" in row:
        fields["utt_id"] = row["utt_id"]
    return fields | GRANARY_FLAGS


def _ast(row: dict, english: list[Clip]) -> dict:
    translation = " ".join(english[index % len(english)].text for index in _sentence_indexes(row["clip"]))
    return _asr(row) | {"answer": translation, "target_lang": "en"}


def _sentence_indexes(clip: Clip) -> list[int]:
    sentences = SENTENCES[clip.language]
    return [index for index, text in enumerate(sentences) if text in clip.text] or [0]


def _build_yodas_granary(layouts: PublicLayouts, companion: list[dict]) -> None:
    import datasets

    folder = layouts.root / "yodas-granary"
    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=TARGET_RATE),
            "text": datasets.Value("string"),
            "utt_id": datasets.Value("string"),
            "duration": datasets.Value("float64"),
            "original_audio_id": datasets.Value("string"),
            "original_audio_offset": datasets.Value("float64"),
            "lang": datasets.Value("string"),
            "task": datasets.Value("string"),
        }
    )
    for split, task in (("asr_only", "asr"), ("ast", "ast")):
        rows = [
            {"audio": {"bytes": encode(row["clip"], "WAV"), "path": f"{row['utt_id']}.wav"},
             "text": row["clip"].text, "utt_id": row["utt_id"], "duration": round(row["clip"].duration_s, 3),
             "original_audio_id": row["video"], "original_audio_offset": row["offset"], "lang": "pt", "task": task}
            for row in companion
        ]  # fmt: skip
        write_parquet(folder / "Portuguese" / split / "0000.parquet", features, rows)
    configs = [_config("Portuguese", {"asr_only": "Portuguese/asr_only/*.parquet", "ast": "Portuguese/ast/*.parquet"})]
    _write_card(folder, {"license": "cc-by-3.0", "configs": configs}, "# YODAS audio for Granary\n")
    layouts.repos[YODAS_GRANARY] = folder


# -- Hub ASR datasets (Parquet) ---------------------------------------------------------------------------------


def _build_common_voice(layouts: PublicLayouts, clips: list[Clip], long_clip: Clip) -> None:
    import datasets

    features = datasets.Features(
        {
            "client_id": datasets.Value("string"),
            "path": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=48_000),
            "sentence": datasets.Value("string"),
            "up_votes": datasets.Value("int64"),
            "down_votes": datasets.Value("int64"),
            "age": datasets.Value("string"),
            "gender": datasets.Value("string"),
            "accent": datasets.Value("string"),
            "locale": datasets.Value("string"),
            "segment": datasets.Value("string"),
            "variant": datasets.Value("string"),
        }
    )

    def row(number: int, clip: Clip) -> dict:
        name = f"common_voice_sv-SE_{40000000 + number}.mp3"
        return {"client_id": f"{number:0128x}", "path": f"sv-SE_train_0/{name}",
                "audio": {"bytes": encode(clip, "MP3", 48_000), "path": name}, "sentence": clip.text,
                "up_votes": 2, "down_votes": 0, "age": "twenties", "gender": "", "accent": "", "locale": "sv-SE",
                "segment": "", "variant": ""}  # fmt: skip

    folder = layouts.root / "common_voice_17_0"
    train = [row(n, clip) for n, clip in enumerate(clips[:4])]
    train.insert(2, row(99, long_clip))
    write_parquet(folder / "sv-SE" / "train-00000-of-00001.parquet", features, train)
    write_parquet(folder / "sv-SE" / "validation-00000-of-00001.parquet", features, [row(10, clips[4])])
    write_parquet(folder / "sv-SE" / "test-00000-of-00001.parquet", features, [row(20, clips[5])])
    splits = {name: f"sv-SE/{name}-*.parquet" for name in ("train", "validation", "test")}
    _write_card(folder, {"license": "cc0-1.0", "configs": [_config("sv-SE", splits)]}, "# Common Voice 17\n")
    layouts.repos[COMMON_VOICE] = folder
    layouts.expected["common_voice_long_row"] = 2


def _build_librispeech(layouts: PublicLayouts, clips: list[Clip]) -> None:
    import datasets

    features = datasets.Features(
        {
            "file": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=TARGET_RATE),
            "text": datasets.Value("string"),
            "speaker_id": datasets.Value("int64"),
            "chapter_id": datasets.Value("int64"),
            "id": datasets.Value("string"),
        }
    )

    def row(number: int, clip: Clip) -> dict:
        key = f"103-1240-{number:04d}"
        text = clip.text.upper().rstrip(".?!").replace(",", "")
        return {"file": f"{key}.flac", "audio": {"bytes": encode(clip, "FLAC"), "path": f"{key}.flac"},
                "text": text, "speaker_id": 103, "chapter_id": 1240, "id": key}  # fmt: skip

    folder = layouts.root / "librispeech_asr"
    _write_converted_parquet(folder, "clean", features, row, {"train.100": clips[:4], "validation": clips[4:]})
    _write_card(folder, {"license": "cc-by-4.0", "configs": [_converted_config(folder, "clean")]}, "# LibriSpeech\n")
    layouts.repos[LIBRISPEECH] = folder


def _build_fleurs(layouts: PublicLayouts, clips: list[Clip]) -> None:
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("int32"),
            "num_samples": datasets.Value("int32"),
            "path": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=TARGET_RATE),
            "transcription": datasets.Value("string"),
            "raw_transcription": datasets.Value("string"),
            "gender": datasets.ClassLabel(names=["male", "female", "other"]),
            "lang_id": datasets.ClassLabel(names=FLEURS_LANG_IDS),
            "language": datasets.Value("string"),
            "lang_group_id": datasets.ClassLabel(names=FLEURS_LANG_GROUPS),
        }
    )

    def row(number: int, clip: Clip) -> dict:
        name = f"{1000 + number}.wav"
        normalised = clip.text.lower().rstrip(".?!").replace(",", "")
        return {"id": 1000 + number, "num_samples": len(clip.samples), "path": name,
                "audio": {"bytes": encode(clip, "WAV"), "path": name}, "transcription": normalised,
                "raw_transcription": clip.text, "gender": number % 2, "lang_id": FLEURS_LANG_IDS.index("sv_se"),
                "language": "Swedish", "lang_group_id": 0}  # fmt: skip

    folder = layouts.root / "fleurs"
    _write_converted_parquet(folder, "sv_se", features, row, {"train": clips[:4], "validation": clips[4:]})
    _write_card(folder, {"license": "cc-by-4.0", "configs": [_converted_config(folder, "sv_se")]}, "# FLEURS\n")
    layouts.repos[FLEURS] = folder


def _build_voxpopuli(layouts: PublicLayouts, clips: list[Clip]) -> None:
    import datasets

    features = datasets.Features(
        {
            "audio_id": datasets.Value("string"),
            "language": datasets.ClassLabel(names=VOXPOPULI_LANGUAGES),
            "audio": datasets.Audio(sampling_rate=TARGET_RATE),
            "raw_text": datasets.Value("string"),
            "normalized_text": datasets.Value("string"),
            "gender": datasets.Value("string"),
            "speaker_id": datasets.Value("string"),
            "is_gold_transcript": datasets.Value("bool"),
            "accent": datasets.Value("string"),
        }
    )

    def row(number: int, clip: Clip) -> dict:
        audio_id = f"20180111-0900-PLENARY-{number}-it_20180111-09:{number:02d}:00_{number}"
        return {"audio_id": audio_id, "language": VOXPOPULI_LANGUAGES.index("it"),
                "audio": {"bytes": encode(clip, "WAV"), "path": f"{audio_id}.wav"}, "raw_text": clip.text,
                "normalized_text": clip.text.lower().rstrip(".?!").replace(",", ""), "gender": "female",
                "speaker_id": "124752", "is_gold_transcript": True, "accent": "None"}  # fmt: skip

    folder = layouts.root / "voxpopuli"
    _write_converted_parquet(folder, "it", features, row, {"train": clips[:4], "validation": clips[4:]})
    _write_card(folder, {"license": "cc0-1.0", "configs": [_converted_config(folder, "it")]}, "# VoxPopuli\n")
    layouts.repos[VOXPOPULI] = folder


# -- folder layouts ------------------------------------------------------------------------------------------


def _build_audiofolder(layouts: PublicLayouts, clips: list[Clip]) -> None:
    folder = layouts.root / "audiofolder"
    for split, chosen in (("train", clips[:4]), ("validation", clips[4:])):
        (folder / split).mkdir(parents=True, exist_ok=True)
        with (folder / split / "metadata.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "transcription", "speaker"])
            for number, clip in enumerate(chosen):
                name = f"{split}_{number:03d}.wav"
                (folder / split / name).write_bytes(encode(clip, "WAV"))
                writer.writerow([name, clip.text, "espeak-en-us"])
    layouts.repos[AUDIOFOLDER] = folder


def _build_webdataset(layouts: PublicLayouts, clips: list[Clip]) -> None:
    folder = layouts.root / "webdataset"
    folder.mkdir(parents=True, exist_ok=True)
    shards = {"train-00000.tar": clips[:2], "train-00001.tar": clips[2:4], "validation-00000.tar": clips[4:]}
    for shard, chosen in shards.items():
        with tarfile.open(folder / shard, "w") as archive:
            for clip in chosen:
                key = f"{shard.split('.')[0]}_{SENTENCES['en'].index(clip.text):06d}"
                for suffix, payload in (("wav", encode(clip, "WAV")), ("txt", clip.text.encode("utf-8"))):
                    member = tarfile.TarInfo(f"{key}.{suffix}")
                    member.size = len(payload)
                    archive.addfile(member, io.BytesIO(payload))
    layouts.repos[WEBDATASET] = folder


# -- files -------------------------------------------------------------------------------------------------------


def write_parquet(target: Path, features: Any, rows: list[dict]) -> Path:
    """Write ``rows`` as a Parquet file in ``datasets``' layout for ``features`` (schema metadata included).

    Written with pyarrow rather than ``datasets.Dataset``, whose ``Audio`` feature needs torchcodec to encode.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    columns = {name: [row[name] for row in rows] for name in features}
    pq.write_table(pa.Table.from_pydict(columns, schema=features.arrow_schema), target)
    return target


def _write_converted_parquet(folder: Path, config: str, features: Any, row: Any, splits: dict[str, list[Clip]]) -> None:
    """``<config>/<split>/0000.parquet`` per split, the layout of the Hub's Parquet conversion; rows numbered on."""
    number = 0
    for split, clips in splits.items():
        rows = [row(number + offset, clip) for offset, clip in enumerate(clips)]
        write_parquet(folder / config / split / "0000.parquet", features, rows)
        number += len(clips)


def _converted_config(folder: Path, config: str) -> dict[str, Any]:
    splits = sorted(path.name for path in (folder / config).iterdir() if path.is_dir())
    return _config(config, {split: f"{config}/{split}/*.parquet" for split in splits})


def _write_jsonl(target: Path, rows: list[dict]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    target.write_text(text, encoding="utf-8")


def _config(name: str, splits: dict[str, str]) -> dict[str, Any]:
    return {"config_name": name, "data_files": [{"split": split, "path": path} for split, path in splits.items()]}


def _write_card(folder: Path, metadata: dict[str, Any], body: str) -> None:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    (folder / "README.md").write_text(f"---\n{header}---\n{body}", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """``python -m voxplug.testing.public_layouts OUT [--hub URL --token TOKEN]``."""
    parser = argparse.ArgumentParser(description="Build speech datasets shaped like the public ones.")
    parser.add_argument("out", type=Path, help="folder to build them in")
    parser.add_argument("--hub", help="also upload them to this Hub endpoint (e.g. a voxplug.testing.hub_server)")
    parser.add_argument("--token", help="write token for --hub")
    parser.add_argument(
        "--namespace",
        help=f"upload every repo under this user or org (default: their public ids in {', '.join(HUB_ORGS)})",
    )
    args = parser.parse_args(argv)
    layouts = build_public_layouts(args.out)
    for repo_id, folder in layouts.repos.items():
        print(f"{repo_id}: {folder}")
    if args.hub:
        if not args.token:
            parser.error("--hub needs --token")
        for repo_id in publish_layouts(layouts, args.hub, args.token, namespace=args.namespace):
            print(f"uploaded {args.hub}/datasets/{repo_id}")


if __name__ == "__main__":
    main()
