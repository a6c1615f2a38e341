"""The test Hub server, driven by the real ``huggingface_hub`` client (and ``datasets`` / ``transformers``).

In-process calls pass ``endpoint=hub.url``: ``huggingface_hub`` reads ``HF_ENDPOINT`` only at import. Code that
cannot take an endpoint (``datasets``, ``transformers``) runs in a subprocess with ``hub.client_env()``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from huggingface_hub import (
    CommitOperationCopy,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import BadRequestError, HfHubHTTPError, RepositoryNotFoundError

from voxplug.testing.hub_server import HubServer

VALID_CARD = """---
license: mit
language: [en, fr]
base_model: mistralai/Voxtral-Mini-3B-2507
model-index:
- name: voxtral-ft
  results:
  - task: {type: automatic-speech-recognition}
    dataset: {name: my voice, type: audiofolder}
    metrics: [{type: wer, value: 0.12}]
---
# A fine-tuned Voxtral
"""


@pytest.fixture(autouse=True)
def classic_lfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use Git LFS rather than Xet: with ``hf_xet`` installed, ``huggingface_hub`` sends LFS files through Xet
    unless ``HF_HUB_DISABLE_XET`` is set, and it reads that variable into ``constants`` at import."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture
def hub(tmp_path: Path, request: pytest.FixtureRequest):
    """A running server; parametrize indirectly with a dict of ``HubServer`` options."""
    with HubServer(tmp_path / "hub", **getattr(request, "param", {})) as server:
        yield server


@pytest.fixture
def api(hub: HubServer) -> HfApi:
    return HfApi(endpoint=hub.url, token=hub.token)


def make_folder(root: Path, readme: str = VALID_CARD, weights: bytes = b"\x00\x01" * 1500) -> Path:
    """A model folder: README.md, config.json and a small safetensors file in a subfolder."""
    (root / "sub").mkdir(parents=True)
    (root / "README.md").write_text(readme)
    (root / "config.json").write_text('{"model_type": "voxtral"}')
    (root / "sub" / "model.safetensors").write_bytes(weights)
    return root


def statuses(hub: HubServer, path_part: str, method: str | None = None) -> list[int]:
    """Statuses of the logged requests whose path contains ``path_part``."""
    return [r.status for r in hub.requests if path_part in r.path and method in (None, r.method)]


# ------------------------------------------------------------------------------------------------ identity


def test_whoami_knows_configured_tokens_and_rejects_others(hub: HubServer) -> None:
    hub.add_token("hf_reader", "reader", write=False)
    assert HfApi(endpoint=hub.url, token=hub.token).whoami()["name"] == "tester"
    reader = HfApi(endpoint=hub.url, token="hf_reader").whoami()
    assert (reader["name"], reader["auth"]["accessToken"]["role"]) == ("reader", "read")
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as err:
        HfApi(endpoint=hub.url, token="hf_wrong").whoami()
    assert err.value.response.status_code == 401
    assert err.value.response.json() == {"error": "Invalid credentials in Authorization header"}


# ------------------------------------------------------------------------------------------------ repos


def test_create_repo_exist_ok_private_and_type_conflict(hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    url = api.create_repo("tester/m", private=True)
    assert (url.repo_id, url.repo_type, url.endpoint) == ("tester/m", "model", hub.url)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("tester/m")
    assert err.value.response.status_code == 409
    assert api.create_repo("tester/m", exist_ok=True).repo_id == "tester/m"

    info = api.model_info("tester/m")
    assert info.private is True and [s.rfilename for s in info.siblings] == [".gitattributes"]
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("tester/m")
    api.upload_file(path_or_fileobj=b"\0" * 100, path_in_repo="w.safetensors", repo_id="tester/m")
    cache = tmp_path / "cache"
    path = hf_hub_download("tester/m", "w.safetensors", endpoint=hub.url, token=hub.token, cache_dir=cache)
    assert Path(path).read_bytes() == b"\0" * 100
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/m", "w.safetensors", endpoint=hub.url, token=False, cache_dir=tmp_path / "anonymous")

    # Same id, another type: an error even with exist_ok (the Hub would create a second repo).
    with pytest.raises(BadRequestError, match="a model repo with this id already exists"):
        api.create_repo("tester/m", repo_type="dataset", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("someone-else/m")
    assert err.value.response.status_code == 403


def test_visibility_is_recorded_as_sent_and_read_back_as_the_hub_reports_it(hub: HubServer, api: HfApi) -> None:
    """create_repo sends ``visibility``; exist_ok leaves an existing repo as it was; update_repo_settings changes it."""
    api.create_repo("tester/open")
    api.create_repo("tester/closed", repo_type="dataset", private=True)
    api.create_repo("tester/demo", repo_type="space", space_sdk="gradio", visibility="protected")
    assert api.model_info("tester/open").private is False and hub.repo_visibility("tester/open") == "public"
    assert api.dataset_info("tester/closed").private is True
    assert api.space_info("tester/demo").private is True and hub.repo_visibility("tester/demo", "space") == "protected"

    api.create_repo("tester/open", private=True, exist_ok=True)  # what voxplug once relied on: a no-op here
    assert api.repo_info("tester/open").private is False
    anonymous = HfApi(endpoint=hub.url, token=False)
    assert anonymous.model_info("tester/open").id == "tester/open"

    api.update_repo_settings("tester/open", private=True)
    assert api.repo_info("tester/open").private is True
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("tester/open")
    api.update_repo_settings("tester/closed", repo_type="dataset", visibility="public")
    assert anonymous.dataset_info("tester/closed").private is False
    refused = httpx.post(  # huggingface_hub refuses this itself; the server does too
        f"{hub.url}/api/repos/create",
        json={"name": "odd", "visibility": "protected"},
        headers={"authorization": f"Bearer {hub.token}"},
    )
    assert refused.status_code == 400 and "Invalid visibility 'protected' for a model repo" in refused.text
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.url, token=False).update_repo_settings("tester/closed", repo_type="dataset", private=True)
    assert err.value.response.status_code == 401 and anonymous.dataset_info("tester/closed").private is False


def test_read_only_token_cannot_write_but_can_read(hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    api.create_repo("tester/m")
    hub.add_token("hf_reader", "tester", write=False)
    reader = HfApi(endpoint=hub.url, token="hf_reader")
    for write in (
        lambda: reader.create_repo("tester/other"),
        lambda: reader.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="tester/m"),
    ):
        with pytest.raises(HfHubHTTPError) as err:
            write()
        assert err.value.response.status_code == 403
    assert list(hub.repo_files("tester/m")) == [".gitattributes"]
    assert reader.list_repo_files("tester/m") == [".gitattributes"]


def test_invalid_token_uploads_nothing(hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    api.create_repo("tester/m")
    intruder = HfApi(endpoint=hub.url, token="hf_wrong")
    with pytest.raises(HfHubHTTPError) as err:
        intruder.upload_folder(repo_id="tester/m", folder_path=make_folder(tmp_path / "f"))
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        hf_hub_download("tester/m", ".gitattributes", endpoint=hub.url, token="hf_wrong", cache_dir=tmp_path / "c")
    assert list(hub.repo_files("tester/m")) == [".gitattributes"]
    assert len(hub.repo_commits("tester/m")) == 1
    assert not statuses(hub, "/lfs-upload/") and not statuses(hub, "/commit/")


# ------------------------------------------------------------------------------------------------ uploads


def test_upload_folder_with_valid_card_goes_through_preupload_lfs_and_commit(
    hub: HubServer, api: HfApi, tmp_path: Path
) -> None:
    folder = make_folder(tmp_path / "f")
    api.create_repo("tester/m")
    commit = api.upload_folder(repo_id="tester/m", folder_path=folder, commit_message="Add model")

    files = hub.repo_files("tester/m")
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "sub/model.safetensors"]
    assert files["sub/model.safetensors"] == (folder / "sub" / "model.safetensors").read_bytes()
    # The safetensors file (LFS by name) went through the batch API, a PUT and a verify; the others inline.
    assert statuses(hub, "/validate-yaml") == [200] * len(statuses(hub, "/validate-yaml")) != []
    assert statuses(hub, "/tester/m.git/info/lfs/objects/batch") == [200]
    assert statuses(hub, "/lfs-upload/", "PUT") == [200]
    assert statuses(hub, "/tester/m.git/info/lfs/objects/verify") == [200]

    info = api.model_info("tester/m", files_metadata=True)
    assert info.sha == commit.oid == hub.repo_commits("tester/m")[0].id
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["sub/model.safetensors"].size == 3000 and lfs["config.json"] is None
    assert info.card_data.license == "mit" and info.card_data.language == ["en", "fr"]
    assert [c.title for c in api.list_repo_commits("tester/m")] == ["Add model", "initial commit"]


@pytest.mark.parametrize("hub", [{"lfs_threshold": 4096}], indirect=True)
def test_files_over_the_threshold_use_lfs_and_known_objects_are_not_uploaded_twice(hub: HubServer, api: HfApi) -> None:
    api.create_repo("tester/m")
    big = os.urandom(5000)
    api.upload_file(path_or_fileobj=big, path_in_repo="weights.dat", repo_id="tester/m")
    api.upload_file(path_or_fileobj=b"x" * 100, path_in_repo="notes.txt", repo_id="tester/m")
    assert statuses(hub, "/lfs-upload/", "PUT") == [200]
    tree = {f.path: f for f in api.list_repo_tree("tester/m")}
    assert tree["weights.dat"].lfs.size == 5000 and tree["notes.txt"].lfs is None

    api.upload_file(path_or_fileobj=big, path_in_repo="copy-of-weights.dat", repo_id="tester/m")
    assert statuses(hub, "/lfs-upload/", "PUT") == [200]  # the batch API had no upload action for it
    assert hub.repo_files("tester/m")["copy-of-weights.dat"] == big


@pytest.mark.parametrize("hub", [{"lfs_threshold": 4096}], indirect=True)
def test_one_commit_with_two_files_of_the_same_content_uploads_and_commits_both(
    hub: HubServer, api: HfApi, tmp_path: Path
) -> None:
    """Two checkpoints' identical tokenizer files, say: one object, two paths, one commit."""
    big = os.urandom(5000)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights.dat").write_bytes(big)
    api.create_repo("tester/m")
    api.upload_folder(folder_path=tmp_path, repo_id="tester/m")
    files = hub.repo_files("tester/m")
    assert files["a/weights.dat"] == files["b/weights.dat"] == big
    assert 403 not in statuses(hub, "/lfs-upload/", "PUT")


def test_lfs_upload_checks_sha256_and_size(hub: HubServer, api: HfApi) -> None:
    api.create_repo("tester/m")
    auth = {"Authorization": f"Bearer {hub.token}"}
    oid = "ab" * 32
    batch = httpx.post(
        f"{hub.url}/tester/m.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 4}]},
        headers=auth,
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert href.startswith(f"{hub.url}/lfs-upload/{oid}?ticket=")
    assert httpx.put(href, content=b"four").status_code == 400  # wrong sha256
    assert httpx.put(href, content=b"five!").status_code == 400  # wrong size
    assert httpx.put(f"{hub.url}/lfs-upload/{oid}?ticket=forged", content=b"four").status_code == 403
    commit = b'{"key": "header", "value": {"summary": "x"}}\n' + (
        b'{"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "%s"}}\n' % oid.encode()
    )
    response = httpx.post(f"{hub.url}/api/models/tester/m/commit/main", content=commit, headers=auth)
    assert response.status_code == 400 and "was not uploaded" in response.json()["error"]


@pytest.mark.parametrize(
    "card, problem",
    [
        ("---\nlicense: [mit\n---\n", "Invalid YAML"),
        ("---\nlicense: [mit, apache-2.0]\n---\n", '"license" must be a string'),
        ("---\nlanguage: 3\n---\n", '"language" must be a string or a list of strings'),
        ("---\nbase_model: {name: x}\n---\n", '"base_model" must be a string or a list of strings'),
        (
            "---\nmodel-index:\n- name: m\n  results:\n  - task: {type: asr}\n    metrics: [{type: wer}]\n---\n",
            '"model-index[0].results[0].dataset.type" is required',
        ),
    ],
)
def test_invalid_card_metadata_is_rejected_and_nothing_is_committed(
    hub: HubServer, api: HfApi, tmp_path: Path, card: str, problem: str
) -> None:
    api.create_repo("tester/m")
    with pytest.raises(ValueError, match="Invalid metadata in README.md") as err:
        api.upload_folder(repo_id="tester/m", folder_path=make_folder(tmp_path / "f", readme=card))
    assert problem in str(err.value)
    assert list(hub.repo_files("tester/m")) == [".gitattributes"]


def test_commit_route_checks_the_card_itself(hub: HubServer, api: HfApi) -> None:
    """``huggingface_hub`` calls validate-yaml before committing a README; the commit route checks it anyway."""
    api.create_repo("tester/m")
    readme = base64.b64encode(b"---\nlanguage: 3\n---\n").decode()
    payload = [
        {"key": "header", "value": {"summary": "Add card"}},
        {"key": "file", "value": {"path": "README.md", "content": readme, "encoding": "base64"}},
    ]
    response = httpx.post(
        f"{hub.url}/api/models/tester/m/commit/main",
        content="".join(json.dumps(line) + "\n" for line in payload),
        headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400
    assert '"language" must be a string' in response.json()["error"]
    assert list(hub.repo_files("tester/m")) == [".gitattributes"]


def test_deletions_copies_and_history(hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    api.create_repo("tester/m")
    first = api.upload_folder(repo_id="tester/m", folder_path=make_folder(tmp_path / "f"))
    api.create_commit(
        "tester/m",
        operations=[
            CommitOperationCopy("sub/model.safetensors", "backup/model.safetensors"),
            CommitOperationCopy("config.json", "backup/config.json"),
        ],
        commit_message="Copy",
    )
    api.delete_folder("sub", repo_id="tester/m")
    api.delete_file("config.json", repo_id="tester/m")
    files = hub.repo_files("tester/m")
    assert sorted(files) == [".gitattributes", "README.md", "backup/config.json", "backup/model.safetensors"]
    assert files["backup/model.safetensors"] == (tmp_path / "f" / "sub" / "model.safetensors").read_bytes()
    assert len(api.list_repo_commits("tester/m")) == 5
    with pytest.raises(HfHubHTTPError):
        api.delete_file("config.json", repo_id="tester/m")
    old = hf_hub_download(
        "tester/m", "config.json", revision=first.oid, endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c"
    )
    assert Path(old).read_text() == '{"model_type": "voxtral"}'
    paths = api.get_paths_info("tester/m", ["backup", "README.md", "missing"], expand=True)
    assert [(p.path, p.last_commit.title) for p in paths] == [("backup", "Copy"), ("README.md", first.commit_message)]


# ------------------------------------------------------------------------------------------------ downloads


@pytest.mark.parametrize("hub", [{"lfs_redirect": True}, {"lfs_redirect": False}], indirect=True)
def test_hf_hub_download_and_snapshot_download_return_identical_bytes(
    hub: HubServer, api: HfApi, tmp_path: Path
) -> None:
    folder = make_folder(tmp_path / "f", weights=os.urandom(3000))
    api.create_repo("tester/m")
    sha = api.upload_folder(repo_id="tester/m", folder_path=folder).oid

    path = hf_hub_download(
        "tester/m", "sub/model.safetensors", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c"
    )
    assert Path(path).read_bytes() == (folder / "sub" / "model.safetensors").read_bytes()
    assert Path(path).parent.parent.name == sha  # the cache's snapshots/<commit>/ layout

    snapshot = Path(snapshot_download("tester/m", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c2"))
    for name in ("README.md", "config.json", "sub/model.safetensors"):
        assert (snapshot / name).read_bytes() == (folder / name).read_bytes()
    assert (statuses(hub, "/lfs-objects/") != []) is hub.lfs_redirect
    with pytest.raises(HfHubHTTPError) as err:
        hf_hub_download("tester/m", "nope.txt", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c")
    assert err.value.response.status_code == 404


def test_resolve_serves_ranges_and_lfs_redirects_to_a_signed_url(hub: HubServer, api: HfApi) -> None:
    api.create_repo("tester/m")
    data = bytes(range(256)) * 20
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="tester/m")
    api.upload_file(path_or_fileobj=data[:100], path_in_repo="small.txt", repo_id="tester/m")
    with httpx.Client(headers={"Authorization": f"Bearer {hub.token}"}) as client:
        head = client.head(f"{hub.url}/tester/m/resolve/main/w.bin")
        assert head.status_code == 302 and head.headers["X-Linked-Size"] == str(len(data))
        assert head.headers["X-Repo-Commit"] == hub.repo_commits("tester/m")[0].id
        ranged = client.get(head.headers["Location"], headers={"Range": "bytes=10-19"})
        assert (ranged.status_code, ranged.content) == (206, data[10:20])
        tail = client.get(f"{hub.url}/tester/m/resolve/main/small.txt", headers={"Range": "bytes=-5"})
        assert (tail.status_code, tail.content) == (206, data[95:100])
        forged = head.headers["Location"].split("?")[0] + "?sig=0"
        assert client.get(forged).status_code == 403


# ------------------------------------------------------------------------------------------------ failures


@pytest.mark.slow
def test_injected_failure_is_retried_by_huggingface_hub(hub: HubServer, api: HfApi) -> None:
    api.create_repo("tester/m")
    hub.fail_next("POST", "/preupload/", status=503)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="tester/m")
    assert statuses(hub, "/preupload/") == [503, 200]
    assert hub.repo_files("tester/m")["config.json"] == b"{}"


def test_injected_commit_failure_leaves_the_repo_unchanged_until_the_caller_retries(hub: HubServer, api: HfApi) -> None:
    api.create_repo("tester/m")
    hub.fail_next("POST", "/commit/", status=500, times=1)
    with pytest.raises(HfHubHTTPError, match="Injected failure"):
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="tester/m")
    assert "config.json" not in hub.repo_files("tester/m")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="tester/m")
    assert statuses(hub, "/commit/") == [500, 200]
    assert all("Bearer" not in r.path and hub.token not in r.path for r in hub.requests)


# ------------------------------------------------------------------------------------------------ Spaces


def test_space_secrets_variables_hardware_and_runtime(hub: HubServer, api: HfApi) -> None:
    api.create_repo(
        "tester/demo",
        repo_type="space",
        space_sdk="gradio",
        space_hardware="cpu-upgrade",
        space_secrets=[{"key": "HF_TOKEN", "value": "s3cret-at-creation"}],
        space_variables=[{"key": "MODEL_ID", "value": "tester/m"}],
    )
    assert hub.space_secrets("tester/demo") == {"HF_TOKEN": "s3cret-at-creation"}
    assert hub.space_variables("tester/demo") == {"MODEL_ID": "tester/m"}
    assert api.get_space_runtime("tester/demo").hardware == "cpu-upgrade"
    assert api.get_space_runtime("tester/demo").stage == "NO_APP_FILE"

    api.add_space_secret("tester/demo", "API_KEY", "s3cret-added", description="an API key")
    api.delete_space_secret("tester/demo", "HF_TOKEN")
    assert hub.space_secrets("tester/demo") == {"API_KEY": "s3cret-added"}
    assert api.get_space_secrets("tester/demo")["API_KEY"].description == "an API key"
    api.add_space_variable("tester/demo", "LANG", "fr")
    api.delete_space_variable("tester/demo", "MODEL_ID")
    assert {k: v.value for k, v in api.get_space_variables("tester/demo").items()} == {"LANG": "fr"}

    runtime = api.request_space_hardware("tester/demo", "t4-small")
    assert runtime.hardware == runtime.requested_hardware == hub.space_hardware("tester/demo") == "t4-small"
    api.upload_file(path_or_fileobj=b"import gradio", path_in_repo="app.py", repo_id="tester/demo", repo_type="space")
    info = api.space_info("tester/demo")
    assert (info.sdk, info.runtime.stage) == ("gradio", "RUNNING")

    # No route ever answers a secret value.
    auth = {"Authorization": f"Bearer {hub.token}"}
    for route in ("secrets", "variables", "runtime", ""):
        body = httpx.get(f"{hub.url}/api/spaces/tester/demo/{route}".rstrip("/"), headers=auth).text
        assert "s3cret" not in body
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.url, token=False).get_space_secrets("tester/demo")
    assert err.value.response.status_code == 401


# ------------------------------------------------------------------------------------------------ Xet


def test_xet_clients_get_a_clear_refusal_for_lfs_files(
    hub: HubServer, api: HfApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("hf_xet")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    api.create_repo("tester/m")
    with pytest.raises(Exception, match="501") as err:
        api.upload_file(path_or_fileobj=b"\0" * 64, path_in_repo="w.safetensors", repo_id="tester/m")
    assert "xet-write-token" in str(err.value)
    assert statuses(hub, "/xet-write-token/") == [501]
    assert list(hub.repo_files("tester/m")) == [".gitattributes"]


@pytest.mark.parametrize("hub", [{"lfs_patterns": (), "lfs_threshold": None}], indirect=True)
def test_regular_only_mode_serves_clients_with_xet_enabled(
    hub: HubServer, api: HfApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("hf_xet")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    folder = make_folder(tmp_path / "f", weights=os.urandom(2048))
    api.create_repo("tester/m")
    api.upload_folder(repo_id="tester/m", folder_path=folder)
    snapshot = Path(snapshot_download("tester/m", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c"))
    assert (snapshot / "sub/model.safetensors").read_bytes() == (folder / "sub/model.safetensors").read_bytes()
    assert not statuses(hub, "xet-") and not statuses(hub, "/lfs-upload/")


# ------------------------------------------------------------------------------------------------ server life


def test_repos_survive_a_restart_on_the_same_root(tmp_path: Path) -> None:
    with HubServer(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("tester/d", repo_type="dataset")
        api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id="tester/d", repo_type="dataset")
    with HubServer(tmp_path / "hub") as hub:
        path = hf_hub_download(
            "tester/d", "data.csv", repo_type="dataset", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c"
        )
        assert Path(path).read_bytes() == b"a,b\n1,2\n"


def test_module_runs_as_a_command(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "voxplug.testing.hub_server", "--port", "0", "--root", str(tmp_path / "hub")]
    process = subprocess.Popen([*command, "--token", "hf_cli:alice"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3].rstrip(",")
        assert HfApi(endpoint=url, token="hf_cli").whoami()["name"] == "alice"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=10)
        finally:
            process.kill()  # nothing once it has exited; a server that ignored Ctrl+C is not left running
    assert status == 0


# ------------------------------------------------------------------------------------------------ libraries


def run_with_hub(hub: HubServer, tmp_path: Path, script: str) -> str:
    """Run ``script`` in a fresh interpreter whose ``huggingface_hub`` points at ``hub``; return its stdout."""
    env = {**os.environ, **hub.client_env(), "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_datasets_push_to_hub_then_load_dataset(hub: HubServer, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    script = """
from datasets import Dataset, load_dataset
Dataset.from_dict({"text": ["bonjour", "hello"], "n": [1, 2]}).push_to_hub("tester/speech")
print(load_dataset("tester/speech", split="train").to_dict())
"""
    assert run_with_hub(hub, tmp_path, script).strip() == "{'text': ['bonjour', 'hello'], 'n': [1, 2]}"
    files = hub.repo_files("tester/speech", "dataset")
    assert "data/train-00000-of-00001.parquet" in files and "README.md" in files
    assert statuses(hub, "/datasets/tester/speech.git/info/lfs/objects/batch") == [200]


@pytest.mark.slow
def test_transformers_push_to_hub_then_from_pretrained(hub: HubServer, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    script = """
import torch
from transformers import BertConfig, BertModel
config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
model = BertModel(config)
model.push_to_hub("tester/tiny")
loaded = BertModel.from_pretrained("tester/tiny")
print(all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values())))
"""
    assert run_with_hub(hub, tmp_path, script).strip().endswith("True")
    assert {"config.json", "model.safetensors"} <= set(hub.repo_files("tester/tiny"))
    assert statuses(hub, "/lfs-upload/", "PUT") == [200]
