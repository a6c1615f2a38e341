"""Transcript scrubbing: the built-in scrubbers, the report, training data, a plugin's own scrubber, and a push."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from voxplug import hookimpl
from voxplug.data.interface import Example
from voxplug.data.scrub import PatternScrubber, make_scrubbers, scrub_examples, scrub_text
from voxplug.errors import ConfigError
from voxplug.extension import PluginOptions

BUILT_IN_ORDER = ["email", "url", "phone", "digits"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jane.doe@example.com today.", "Write to [EMAIL] today."),
        ("Write to jane dot doe at example dot com.", "Write to [EMAIL]."),
        ("Call +44 20 7946 0958 or (555) 123-4567.", "Call [PHONE] or [PHONE]."),
        ("My card is 4111 1111 1111 1111.", "My card is [NUMBER]."),
        ("See https://example.org/a?b=1. Or www.foo.co.uk.", "See [URL]. Or [URL]."),
        ("Go to example dot org or example.org/page.", "Go to [URL] or [URL]."),
        ("We met on 12.05.2024 at 3 p.m., e.g. in 1999, and paid 1,000 dollars.", None),
        ("Mr. Smith read 42 pages in 2 hours.", None),
    ],
)
def test_built_in_scrubbers_replace_personal_data_and_nothing_else(text: str, expected: str | None) -> None:
    cleaned, replacements = scrub_text(text, make_scrubbers(BUILT_IN_ORDER))
    assert cleaned == (expected or text)
    assert bool(replacements) == (expected is not None)


def test_options_change_the_token_and_thresholds() -> None:
    (digits,) = make_scrubbers(["digits"], options={"digits": {"replacement": "#", "min_digits": 4}})
    assert digits.scrub("pin 1234, code 123")[0] == "pin #, code 123"
    (email,) = make_scrubbers(["email"], options={"email": {"spoken": False}})
    assert email.scrub("jane at example dot com")[0] == "jane at example dot com"


def test_the_report_keeps_personal_data_out_of_its_summary_but_in_its_private_file(tmp_path: Path) -> None:
    examples = [
        Example("a", "mail jane@example.com or call 0612345678", origin="data.jsonl line 1"),
        Example("b", "nothing personal here", origin="data.jsonl line 2"),
    ]
    cleaned, report = scrub_examples(examples, make_scrubbers(BUILT_IN_ORDER))
    assert [example.text for example in cleaned] == ["mail [EMAIL] or call [PHONE]", "nothing personal here"]
    assert examples[0].text.startswith("mail jane@")  # the originals are not modified
    summary = report.summary()
    assert summary == {
        "scrubbers": BUILT_IN_ORDER,
        "rows_checked": 2,
        "rows_changed": 1,
        "replacements": {"email": 1, "url": 0, "phone": 1, "digits": 0},
    }
    assert "jane" not in json.dumps(summary) + report.describe()
    path = report.write(tmp_path / "scrub_report.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["rows"][0]["row"] == "data.jsonl line 1"
    assert {item["original"] for item in written["rows"][0]["replacements"]} == {"jane@example.com", "0612345678"}


class NamesOptions(PluginOptions):
    names: list[str] = Field(default_factory=lambda: ["Alice"])
    replacement: str = "[NAME]"


class NameScrubber(PatternScrubber):
    """A third-party scrubber: given first names."""

    name = "names"
    Options = NamesOptions
    options: NamesOptions

    def pattern(self):
        import re

        return re.compile(r"\b(?:" + "|".join(map(re.escape, self.options.names)) + r")\b")


class NamesPlugin:
    @hookimpl
    def register_text_scrubbers(self, register) -> None:
        register(NameScrubber)


def write_manifest(folder: Path, clips: list[tuple[Path, str]], texts: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, ((path, _text), text) in enumerate(zip(clips, texts, strict=False)):
        (folder / path.name).write_bytes(path.read_bytes())
        lines.append(json.dumps({"id": f"r{index}", "audio_path": path.name, "text": text, "language": "en"}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "data.jsonl"


def test_training_data_is_scrubbed_by_built_in_and_plugin_scrubbers(
    tmp_path: Path, speech_clips, register_plugin, plugin_host
) -> None:
    from voxplug.config import validate_config
    from voxplug.data.loading import load_training_data

    register_plugin(NamesPlugin(), name="names-plugin")
    texts = ["Alice wrote to alice@example.com", "Bob and Alice called 0612345678", "Carol read a book", "Dan"]
    manifest = write_manifest(tmp_path / "data", speech_clips[:4], texts)
    config = validate_config(
        {
            "data": {
                "jsonl": {"path": str(manifest)},
                "scrub": ["email", "names", "phone"],
                "scrub_options": {"names": {"names": ["Alice", "Bob"]}},
                "split": {"eval_fraction": 0.25},
            }
        },
        base_dir=tmp_path,
    )
    data = load_training_data(config, plugin_host, check_audio="lazy")
    texts_after = sorted(example.text for example in [*data.train, *data.eval])
    expected = ["[NAME] wrote to [EMAIL]", "[NAME] and [NAME] called [PHONE]", "Carol read a book", "Dan"]
    assert texts_after == sorted(expected)
    assert data.summary["scrub"]["replacements"] == {"email": 1, "names": 3, "phone": 1}
    assert "Alice" not in json.dumps(data.summary)
    assert data.scrub_report is not None and data.scrub_report.rows_checked == 4


def test_unknown_scrubbers_and_bad_options_fail_before_anything_runs(tmp_path: Path, plugin_host) -> None:
    from voxplug.config import resolve_plugin_options, validate_config

    for data, message in (
        ({"scrub": ["emial"]}, "unknown text scrubber 'emial'"),
        ({"scrub_options": {"emial": {}}}, "data.scrub_options.emial: unknown text scrubber"),
        ({"scrub_options": {"digits": {"min_digits": 1}}}, "data.scrub_options.digits.min_digits"),
        ({"scrub_options": {"email": {"replacment": "x"}}}, "data.scrub_options.email.replacment: unknown key"),
    ):
        config = validate_config({"data": {"jsonl": {"path": "x.jsonl"}, **data}}, base_dir=tmp_path)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            resolve_plugin_options(config, plugin_host)


@pytest.mark.slow
def test_data_push_scrubs_the_pushed_transcripts_and_prints_only_counts(
    tmp_path: Path, speech_clips, hub_server
) -> None:
    import pyarrow.parquet as pq

    from voxplug.data.store import DatasetStore

    store = DatasetStore.create(tmp_path / "voice", language="en")
    store.add(speech_clips[0][0], "Mail me at jane@example.com please")
    store.add(speech_clips[1][0], "Just a sentence")
    report_path = tmp_path / "private" / "report.json"
    command = [sys.executable, "-m", "voxplug", "data", "push", str(store.path), "tester/voice"]
    command += ["--scrub", "email,phone", "--scrub-report", str(report_path)]
    result = subprocess.run(
        command, env={**os.environ, **hub_server.client_env()}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "scrubbed 1 row(s) of 2: email 1, phone 0" in result.stdout
    assert "jane" not in result.stdout + result.stderr
    files = hub_server.repo_files("tester/voice", "dataset")
    shard = next(data for name, data in files.items() if name.endswith(".parquet"))
    pushed = sorted(pq.read_table(io.BytesIO(shard), columns=["text"]).column("text").to_pylist())
    assert pushed == ["Just a sentence", "Mail me at [EMAIL] please"]
    assert "jane@example.com" in report_path.read_text(encoding="utf-8")
    assert next(row["text"] for row in store.rows()).endswith("jane@example.com please")  # local copy unchanged
