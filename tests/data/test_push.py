"""``voxplug data push`` against the Hub-compatible test server: a real, private, resumable Hub dataset.

The push and the load run in subprocesses whose environment points ``huggingface_hub`` and ``datasets`` at the
server (both read ``HF_ENDPOINT`` at import time), exactly as a user runs them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from voxplug.data.store import DatasetStore
from voxplug.testing.hub_server import HubServer

LOAD_BACK = """
import hashlib, io, json, sys
import soundfile as sf
from datasets import Audio, load_dataset
dataset = load_dataset(sys.argv[1], split="train").cast_column("audio", Audio(decode=False))
rows = []
for row in dataset:
    samples, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="int16")
    rows.append({key: row[key] for key in ("id", "text", "language", "duration_s", "origin", "sha256")}
                | {"pcm": hashlib.sha256(samples.tobytes()).hexdigest(), "rate": rate})
print(json.dumps(rows))
"""


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, cwd=cwd, timeout=300)


def voxplug(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "voxplug", "data", *args], env)


def local_rows(store: DatasetStore) -> list[dict]:
    import soundfile as sf

    rows = []
    for row in store.rows():
        samples, rate = sf.read(str(store.path / row["audio_path"]), dtype="int16")
        keys = ("id", "text", "language", "duration_s", "origin", "sha256")
        rows.append(
            {key: row[key] for key in keys} | {"pcm": hashlib.sha256(samples.tobytes()).hexdigest(), "rate": rate}
        )
    return rows


@pytest.fixture
def two_language_store(filled_store: DatasetStore, zoo) -> DatasetStore:
    filled_store.add(zoo["stereo_44k"], "une tonalité", language="fr", origin="recording")
    return filled_store


@pytest.mark.slow
def test_push_makes_a_private_dataset_that_loads_back_identically(two_language_store, hub_server: HubServer):
    env = hub_server.client_env()
    pushed = voxplug("push", str(two_language_store.path), "tester/my-voice", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert "tester/my-voice (private)" in pushed.stdout and hub_server.token not in pushed.stdout + pushed.stderr
    assert hub_server._repo("tester/my-voice", "dataset").private
    files = hub_server.repo_files("tester/my-voice", "dataset")
    assert set(files) == {".gitattributes", "README.md", "data/train-00000-of-00001.parquet"}
    assert len(hub_server.repo_commits("tester/my-voice", "dataset")) == 2  # the initial one, then one upload
    loaded = run([sys.executable, "-c", LOAD_BACK, "tester/my-voice"], env)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout.splitlines()[-1]) == local_rows(two_language_store)


@pytest.mark.slow
def test_pushing_into_an_existing_public_dataset_is_refused_before_uploading(filled_store, hub_server: HubServer):
    from huggingface_hub import HfApi

    HfApi(endpoint=hub_server.url, token=hub_server.token).create_repo("tester/open-voice", repo_type="dataset")
    pushed = voxplug("push", str(filled_store.path), "tester/open-voice", env=hub_server.client_env())
    assert pushed.returncode == 1
    assert "tester/open-voice is public, but you asked for a private dataset repo" in pushed.stderr
    assert "hf repos settings tester/open-voice --type dataset --private" in pushed.stderr
    assert set(hub_server.repo_files("tester/open-voice", "dataset")) == {".gitattributes"}
    assert "hub_id" not in filled_store.metadata


@pytest.mark.slow
def test_a_pushed_dataset_is_named_in_the_cards_of_models_trained_on_it(filled_store, hub_server: HubServer):
    from voxplug_jsonl import JsonlOptions, JsonlSource

    source = JsonlSource(JsonlOptions(path=filled_store.path / "data.jsonl"))
    assert source.dataset_id() is None  # never pushed: local data has no Hub id
    pushed = voxplug("push", str(filled_store.path), "tester/named-voice", env=hub_server.client_env())
    assert pushed.returncode == 0, pushed.stderr
    assert filled_store.metadata["hub_id"] == "tester/named-voice"
    assert source.dataset_id() == "tester/named-voice"


@pytest.mark.slow
def test_the_card_has_hub_metadata_and_a_snippet_that_works(two_language_store, hub_server: HubServer, tmp_path):
    env = hub_server.client_env()
    assert voxplug("push", str(two_language_store.path), "tester/card-check", "--public", env=env).returncode == 0
    assert not hub_server._repo("tester/card-check", "dataset").private
    card = hub_server.repo_files("tester/card-check", "dataset")["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["language"] == ["en", "fr"] and metadata["license"] == "cc-by-4.0"
    assert metadata["task_categories"] == ["automatic-speech-recognition"] and metadata["size_categories"] == ["n<1K"]
    assert metadata["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    assert metadata["dataset_info"]["splits"][0]["num_examples"] == 7
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    result = run([sys.executable, "-c", snippet], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "16000" in result.stdout


@pytest.mark.slow
def test_a_failed_push_leaves_nothing_and_a_retry_completes(filled_store: DatasetStore, hub_server: HubServer):
    env = hub_server.client_env()
    hub_server.fail_next("POST", "/commit/", status=400)  # not transient: no retry, the push fails
    failed = voxplug("push", str(filled_store.path), "tester/flaky", env=env)
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.startswith("error: uploading 1 shard(s) and the card to tester/flaky failed: ")
    assert hub_server.token not in failed.stderr
    assert set(hub_server.repo_files("tester/flaky", "dataset")) == {".gitattributes"}
    shard = filled_store.path / ".push" / "data" / "train-00000-of-00001.parquet"
    staged_at = shard.stat().st_mtime_ns
    retried = voxplug("push", str(filled_store.path), "tester/flaky", env=env)
    assert retried.returncode == 0, retried.stderr
    assert shard.stat().st_mtime_ns == staged_at  # the staged shard was reused, not rebuilt
    assert "data/train-00000-of-00001.parquet" in hub_server.repo_files("tester/flaky", "dataset")


@pytest.mark.slow
def test_pushing_again_after_changes_replaces_the_shards(filled_store: DatasetStore, hub_server: HubServer, zoo):
    env = hub_server.client_env()
    assert voxplug("push", str(filled_store.path), "tester/grow", env=env).returncode == 0
    filled_store.add(zoo["flac"], "one more")
    assert voxplug("push", str(filled_store.path), "tester/grow", env=env).returncode == 0
    files = hub_server.repo_files("tester/grow", "dataset")
    shards = sorted(name for name in files if name.startswith("data/"))
    assert shards == ["data/train-00000-of-00001.parquet"]
    assert pq.read_table(io.BytesIO(files[shards[0]])).num_rows == 7


@pytest.mark.slow
def test_push_without_a_token_says_how_to_get_one(filled_store: DatasetStore, hub_server: HubServer, tmp_path):
    env = {**hub_server.client_env(), "HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home")}
    result = voxplug("push", str(filled_store.path), "tester/x", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no Hugging Face token: set HF_TOKEN in the environment or run `hf auth")


@pytest.mark.slow
def test_push_refuses_rows_whose_audio_is_gone(filled_store: DatasetStore, hub_server: HubServer) -> None:
    row = next(filled_store.rows())
    (filled_store.path / row["audio_path"]).unlink()
    result = voxplug("push", str(filled_store.path), "tester/x", env=hub_server.client_env())
    assert result.returncode == 1 and f"row {row['id']!r}: audio file {row['audio_path']} not found" in result.stderr
    assert "voxplug data validate --fix" in result.stderr


@pytest.mark.slow
def test_transient_failures_are_retried_in_process(
    filled_store: DatasetStore, hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from voxplug.data.push import push_dataset
    from voxplug.publishing.hub import RetryPolicy

    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    hub_server.fail_next("POST", "/commit/", status=503, times=2)
    published: list = []

    class Recorder:
        def after_publish(self, *, result) -> None:
            published.append(result)

    result = push_dataset(
        filled_store.path, "my-voice", endpoint=hub_server.url, retry=RetryPolicy(3, 0.01), host=Recorder()
    )
    assert result.destination == "tester/my-voice" and result.kind == "dataset" and published == [result]
    assert result.url == f"{hub_server.url}/datasets/tester/my-voice"
    assert "data/train-00000-of-00001.parquet" in hub_server.repo_files("tester/my-voice", "dataset")
