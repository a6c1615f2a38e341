"""One token lookup order, never shown, never logged, never lent to strangers."""

from __future__ import annotations

import os

import pytest

from voxplug.app.tokens import (
    ResolvedToken,
    Secret,
    ServerTokenPolicy,
    check_token,
    job_environment,
    redact,
    resolve_token,
)
from voxplug.errors import PublishError

SERVER = "hf_serverTokenAbcdefghijkl"
ENTERED = "hf_enteredTokenAbcdefghijk"


@pytest.fixture
def server_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SERVER)
    monkeypatch.delenv("SPACE_ID", raising=False)


def test_the_entered_token_comes_first(server_token: None) -> None:
    resolved = resolve_token(Secret(ENTERED), policy=ServerTokenPolicy(), username=None)
    assert resolved.source == "entered" and resolved.secret.reveal() == ENTERED


def test_a_signed_in_users_own_token_comes_before_the_servers(server_token: None) -> None:
    oauth = Secret("hf_oauthTokenAbcdefghijklm")
    policy = ServerTokenPolicy()
    assert resolve_token(None, policy=policy, username="u", oauth=oauth).source == "oauth"
    assert resolve_token(Secret(ENTERED), policy=policy, username="u", oauth=oauth).source == "entered"


def test_the_server_token_is_lent_only_on_loopback(server_token: None) -> None:
    assert resolve_token(None, policy=ServerTokenPolicy(host="127.0.0.1"), username=None).source == "server"
    assert resolve_token(None, policy=ServerTokenPolicy(host="0.0.0.0"), username=None).source == "none"
    assert resolve_token(None, policy=ServerTokenPolicy("always", "0.0.0.0"), username=None).source == "server"
    assert resolve_token(None, policy=ServerTokenPolicy("never"), username=None).source == "none"


def test_on_a_space_only_the_signed_in_owner_gets_the_server_token(
    server_token: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACE_ID", "owner/voxplug")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    policy = ServerTokenPolicy(host="0.0.0.0")
    assert resolve_token(None, policy=policy, username="owner").source == "server"
    assert resolve_token(None, policy=policy, username="visitor").source == "none"
    assert resolve_token(None, policy=policy, username=None).source == "none"


def test_a_secret_never_shows_itself() -> None:
    secret = Secret(ENTERED)
    assert ENTERED not in repr(secret) and ENTERED not in str(secret) and ENTERED not in f"{secret}"
    assert ENTERED not in repr(ResolvedToken(secret, "entered"))


def test_jobs_get_exactly_the_resolved_token(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"PATH": "/bin", "HF_TOKEN": SERVER, "HF_WRITE_TOKEN": "hf_other1234567890", "HUGGINGFACE_HUB_TOKEN": "x"}
    env = job_environment(ResolvedToken(Secret(ENTERED), "entered"), base)
    assert env == {"PATH": "/bin", "HF_TOKEN": ENTERED, "VOXPLUG_NO_LOCAL_PLUGINS": "1"}
    without = job_environment(ResolvedToken(None, "none"), base)
    assert "HF_TOKEN" not in without and without["HF_TOKEN_PATH"] == os.devnull


def test_redaction_hides_given_secrets_and_anything_token_shaped() -> None:
    text = f"using {ENTERED} and hf_someOtherToken123 and plain words"
    assert redact(text, [Secret(ENTERED)]) == "using hf_*** and hf_*** and plain words"
    assert redact("no secret here") == "no secret here"


def test_check_token_asks_the_hub(hub_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    assert check_token(Secret(hub_server.token)) == "tester"
    with pytest.raises(PublishError) as refused:
        check_token(Secret("hf_notAValidTokenAtAll123"))
    assert "hf_notAValidTokenAtAll123" not in str(refused.value)
