"""The README.md (dataset card) of a pushed dataset: Hub metadata in YAML and a loading snippet that works."""

from __future__ import annotations

from typing import Any

import yaml

#: Columns of a pushed dataset and their ``datasets`` feature types, in order.
FEATURES: tuple[tuple[str, Any], ...] = (
    ("id", "string"),
    ("audio", {"audio": {"sampling_rate": 16000}}),
    ("text", "string"),
    ("language", "string"),
    ("duration_s", "float64"),
    ("origin", "string"),
    ("sha256", "string"),
)

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for ``rows`` rows."""
    return next((label for limit, label in _SIZE_CATEGORIES if rows < limit), "1M<n<10M")


def render_dataset_card(
    *,
    repo_id: str,
    name: str,
    description: str,
    licence: str | None,
    summary: dict[str, Any],
    shard_bytes: int,
) -> str:
    """The card's text: YAML front matter (languages, licence, size, task, configs, features) and Markdown."""
    metadata = _metadata(name, licence, summary, shard_bytes)
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{_body(repo_id, name, description, licence, summary)}"


def _metadata(name: str, licence: str | None, summary: dict[str, Any], shard_bytes: int) -> dict[str, Any]:
    languages = sorted(code for code in summary["languages"] if code != "unknown")
    metadata: dict[str, Any] = {
        "pretty_name": name,
        "license": licence or "unknown",
        "task_categories": ["automatic-speech-recognition"],
        "size_categories": [size_category(summary["rows"])],
        "tags": ["audio", "speech", "voxplug"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {
            "features": [{"name": column, "dtype": dtype} for column, dtype in FEATURES],
            "splits": [{"name": "train", "num_bytes": shard_bytes, "num_examples": summary["rows"]}],
            "download_size": shard_bytes,
            "dataset_size": shard_bytes,
        },
    }
    if languages:
        metadata = {"language": languages, **metadata}
    return metadata


def _body(repo_id: str, name: str, description: str, licence: str | None, summary: dict[str, Any]) -> str:
    languages = ", ".join(f"{code} ({count})" for code, count in summary["languages"].items()) or "none"
    licence_line = f"Licence: `{licence}`." if licence else "Licence: not stated by the dataset's owner."
    return f"""# {name}

{description or "Speech recordings with transcripts, made with voxplug."}

- Rows: {summary["rows"]} ({summary["hours"]:.2f} hours of audio)
- Languages (rows): {languages}
- Audio: 16 kHz mono 16-bit WAV, embedded in Parquet shards under `data/`
- {licence_line}

## Load it

```python
import io

import soundfile as sf
from datasets import Audio, load_dataset

dataset = load_dataset("{repo_id}", split="train")
# Read the audio with soundfile (no torchcodec or FFmpeg needed):
dataset = dataset.cast_column("audio", Audio(decode=False))
row = dataset[0]
samples, sampling_rate = sf.read(io.BytesIO(row["audio"]["bytes"]))
print(row["text"], row["language"], sampling_rate, len(samples) / sampling_rate)
```

With `torchcodec` installed, `dataset[0]["audio"]` decodes directly without the `cast_column` line.

To fine-tune on it with voxplug:

```yaml
data:
  source: hub
  hub:
    repo: {repo_id}
    language_column: language
```

## Columns

| column | what it holds |
|---|---|
| `id` | a stable row id (the start of the audio's content hash) |
| `audio` | the clip |
| `text` | the transcript, as spoken |
| `language` | ISO 639 language code |
| `duration_s` | clip length in seconds |
| `origin` | how the clip was collected: `recording`, `upload` or `import` |
| `sha256` | hash of the 16 kHz 16-bit samples (duplicates share it) |
"""
