"""The ``hub`` publisher against the test Hub on loopback: one commit, LFS, retries, resume, and every refusal."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from publishing_helpers import READ_TOKEN, hub_options

from voxplug.errors import PublishError
from voxplug.publishing.publish import publish_model
from voxplug.testing.hub_server import DEFAULT_TOKEN, HubServer

UPLOADS = ("/api/repos/create", "/preupload/", "/commit/", "/info/lfs/", "/lfs-upload/")


def uploads(hub: HubServer) -> list[str]:
    """The requests that create or change something."""
    return [f"{r.method} {r.path}" for r in hub.requests if any(part in r.path for part in UPLOADS)]


def test_lora_run_is_one_private_commit_without_checkpoints(lora_run: Path, hub: HubServer, plugin_host) -> None:
    result = publish_model(lora_run, target="hub", options=hub_options(hub))
    assert result.destination == "tester/lora-run" and result.url == f"{hub.url}/tester/lora-run"
    files = hub.repo_files("tester/lora-run")
    assert set(files) == {".gitattributes", *result.files}
    assert not any(
        word in name for name in files for word in ("checkpoint", "optimizer", "trainer_state", "predictions")
    )
    commits = hub.repo_commits("tester/lora-run")
    assert [c.title for c in commits] == [
        "Publish lora-run with voxplug",
        "initial commit",
    ]  # the Hub's creation commit
    assert set(commits[0].files) == set(files)
    assert commits[0].files["adapter_model.safetensors"].lfs and commits[0].files["merged/model.safetensors"].lfs
    assert any("/info/lfs/objects/batch" in r.path for r in hub.requests)
    assert any(r.path == "/api/validate-yaml" and r.status == 200 for r in hub.requests)
    assert hub.store.repos[("model", "tester/lora-run")].private is True


def test_public_flag_and_an_explicit_repo_id(full_run: Path, hub: HubServer, plugin_host) -> None:
    result = publish_model(
        full_run, target="hub", destination="my-voice-model", options=hub_options(hub, private=False)
    )
    assert result.destination == "tester/my-voice-model"
    assert hub.store.repos[("model", "tester/my-voice-model")].private is False
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= set(result.files)


def test_publishing_into_an_existing_public_repo_is_refused_before_uploading(
    full_run: Path, hub: HubServer, plugin_host
) -> None:
    """Private is the default; an existing public repo stays public under create_repo, so nothing may go up."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo("tester/shared", private=False)
    before = len(hub.requests)
    with pytest.raises(PublishError, match=r"tester/shared is public, but you asked for a private model repo") as err:
        publish_model(full_run, target="hub", destination="tester/shared", options=hub_options(hub))
    assert "hf repos settings tester/shared --private" in str(err.value)
    assert set(hub.repo_files("tester/shared")) == {".gitattributes"}
    assert hub.repo_visibility("tester/shared") == "public"
    assert not [r for r in hub.requests[before:] if "/preupload/" in r.path or "/commit/" in r.path]

    api.update_repo_settings("tester/shared", private=True)  # what the message says to do
    publish_model(full_run, target="hub", destination="tester/shared", options=hub_options(hub))
    assert "model.safetensors" in hub.repo_files("tester/shared") and api.model_info("tester/shared").private


def test_asking_for_public_on_a_private_repo_is_refused_too(full_run: Path, hub: HubServer, plugin_host) -> None:
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=hub.token).create_repo("tester/kept", private=True)
    with pytest.raises(PublishError, match=r"tester/kept is private, but you asked for a public model repo"):
        publish_model(full_run, target="hub", destination="tester/kept", options=hub_options(hub, private=False))
    assert set(hub.repo_files("tester/kept")) == {".gitattributes"}


@pytest.mark.slow
@pytest.mark.parametrize("remove_stale", [True, False])
def test_publishing_another_run_to_the_same_repo_replaces_the_earlier_files(
    full_run: Path, lora_run: Path, hub: HubServer, plugin_host, remove_stale: bool
) -> None:
    """A full model then an adapter in one repo: the full weights must go, or loaders would find both."""
    publish_model(full_run, target="hub", destination="tester/my-voice", options=hub_options(hub))
    options = {**hub_options(hub), "remove_stale_files": remove_stale}
    result = publish_model(lora_run, target="hub", destination="tester/my-voice", options=options)
    files = set(hub.repo_files("tester/my-voice"))
    if remove_stale:
        assert files == {".gitattributes", *result.files} and "model.safetensors" not in files
        assert len(hub.repo_commits("tester/my-voice")) == 3  # creation, first publish, one replacing commit
    else:
        assert {"model.safetensors", "adapter_model.safetensors"} <= files


@pytest.mark.slow
def test_transient_failures_are_retried_and_the_repo_is_complete(
    lora_run: Path, hub: HubServer, plugin_host, caplog
) -> None:
    hub.fail_next("POST", "/commit/main", 500, times=2)
    hub.fail_next("POST", "/api/repos/create", 503)
    hub.fail_next("PUT", "/lfs-upload/", 502)
    with caplog.at_level(logging.WARNING, logger="voxplug.publishing"):
        result = publish_model(lora_run, target="hub", options=hub_options(hub))
    assert set(hub.repo_files("tester/lora-run")) == {".gitattributes", *result.files}
    assert len(hub.repo_commits("tester/lora-run")) == 2
    assert sum("retry" in message for message in caplog.messages) == 3  # create once, commit twice (LFS PUT: client)


@pytest.mark.slow
def test_an_interrupted_publish_resumes_without_resending_large_files(
    lora_run: Path, hub: HubServer, plugin_host
) -> None:
    hub.fail_next("POST", "/commit/main", 500, times=2)
    with pytest.raises(PublishError, match=r"uploading 16 files to tester/lora-run failed after 2 tries"):
        publish_model(lora_run, target="hub", options=hub_options(hub, max_attempts=2))
    assert set(hub.repo_files("tester/lora-run")) == {".gitattributes"}  # nothing half-published
    sent_before = sum(r.path.startswith("/lfs-upload/") for r in hub.requests)
    result = publish_model(lora_run, target="hub", options=hub_options(hub))
    assert set(hub.repo_files("tester/lora-run")) == {".gitattributes", *result.files}
    assert sum(r.path.startswith("/lfs-upload/") for r in hub.requests) == sent_before  # already on the server


def test_missing_token_fails_before_any_request(
    lora_run: Path, hub: HubServer, plugin_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_WRITE_TOKEN", DEFAULT_TOKEN)  # a name other tools use: not read, but named in the error
    with pytest.raises(PublishError, match="no Hugging Face token: set HF_TOKEN .* or run `hf auth login`") as error:
        publish_model(lora_run, target="hub", options=hub_options(hub))
    assert "HF_WRITE_TOKEN is set, but voxplug reads only HF_TOKEN" in str(error.value)
    assert DEFAULT_TOKEN not in str(error.value)
    assert hub.requests == []


def test_invalid_token_is_refused_by_whoami_and_nothing_is_uploaded(
    lora_run: Path, hub: HubServer, plugin_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    with pytest.raises(PublishError, match=r"token from the HF_TOKEN environment variable was refused .*HTTP 401"):
        publish_model(lora_run, target="hub", options=hub_options(hub))
    assert [r.path for r in hub.requests] == ["/api/whoami-v2"]


def test_read_only_token_is_refused(lora_run: Path, hub: HubServer, plugin_host, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    with pytest.raises(PublishError, match="is read-only; publishing needs a token with write access"):
        publish_model(lora_run, target="hub", options=hub_options(hub))
    assert uploads(hub) == []


@pytest.mark.parametrize(
    ("repo_id", "message"),
    [
        ("tester/bad name!", "invalid repo id 'tester/bad name!'"),
        ("a/b/c", "invalid repo id 'a/b/c'"),
        ("datasets/tester/x", "drop the 'datasets/' prefix"),
        ("tester/--x", "invalid repo id"),
    ],
)
def test_invalid_repo_id_is_refused(lora_run: Path, hub: HubServer, plugin_host, repo_id: str, message: str) -> None:
    with pytest.raises(PublishError, match=message.replace("(", r"\(").replace("!", "!")):
        publish_model(lora_run, target="hub", destination=repo_id, options=hub_options(hub))
    assert uploads(hub) == []


def test_repo_of_another_type_is_refused(lora_run: Path, hub: HubServer, plugin_host) -> None:
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=DEFAULT_TOKEN).create_repo("tester/my-voice", repo_type="dataset")
    before = len(uploads(hub))
    with pytest.raises(PublishError, match=r"tester/my-voice already exists as a dataset repo .*not a model repo"):
        publish_model(lora_run, target="hub", destination="tester/my-voice", options=hub_options(hub))
    assert len(uploads(hub)) == before


def test_incomplete_folder_is_refused_before_the_hub_is_contacted(
    lora_run: Path, hub: HubServer, tmp_path: Path, plugin_host
) -> None:
    run = shutil.copytree(lora_run, tmp_path / "run")
    (run / "model" / "adapter_config.json").unlink()
    with pytest.raises(PublishError, match="incomplete LoRA adapter folder, missing: adapter_config.json"):
        publish_model(run, target="hub", options=hub_options(hub))
    assert hub.requests == []


def test_a_file_holding_the_token_is_never_uploaded(
    lora_run: Path, hub: HubServer, tmp_path: Path, plugin_host
) -> None:
    run = shutil.copytree(lora_run, tmp_path / "run")
    (run / "model" / "tokenizer_config.json").write_text(f'{{"note": "{DEFAULT_TOKEN}"}}')
    with pytest.raises(PublishError, match="token appears in merged/tokenizer_config.json, tokenizer_config.json"):
        publish_model(run, target="hub", options=hub_options(hub))
    assert uploads(hub) == []


@pytest.mark.slow
def test_token_never_appears_in_uploaded_files_or_logs(
    lora_run: Path, hub: HubServer, plugin_host, caplog, capfd
) -> None:
    hub.fail_next("POST", "/commit/main", 500)
    with caplog.at_level(logging.DEBUG):
        publish_model(lora_run, target="hub", options=hub_options(hub))
    captured = capfd.readouterr()
    assert DEFAULT_TOKEN not in caplog.text + captured.out + captured.err
    assert all(DEFAULT_TOKEN.encode() not in content for content in hub.repo_files("tester/lora-run").values())


def test_connection_errors_are_retried_and_other_errors_are_not(caplog) -> None:
    import httpx2

    from voxplug.publishing.hub import retry_transient

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise httpx2.ConnectError("connection refused")
        return "done"

    with caplog.at_level(logging.WARNING, logger="voxplug.publishing"):
        assert retry_transient(flaky, what="talking to the Hub", wait_s=0.001) == "done"
    assert len(calls) == 3 and len(caplog.records) == 2

    def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not the network")

    calls.clear()
    with pytest.raises(ValueError):
        retry_transient(broken, what="x", wait_s=0.001)
    assert len(calls) == 1

    def always_down() -> None:
        raise httpx2.ConnectError("connection refused")

    with pytest.raises(PublishError, match=r"talking to the Hub failed after 2 tries: connection refused"):
        retry_transient(always_down, what="talking to the Hub", attempts=2, wait_s=0.001)
