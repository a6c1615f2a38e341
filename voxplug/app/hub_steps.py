"""The job steps that talk to the Hub: ``voxplug data push``, ``voxplug publish --target hub``, ``voxplug deploy``.

Shared by the Train tab (push the dataset first, deploy after publishing) and the Publish tab. Tokens never appear
here: jobs get them in their environment (see :mod:`voxplug.app.tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voxplug.app.jobs import JobStep
from voxplug.errors import VoxplugError

READ_TOKEN_ENV = "HF_READ_TOKEN"
"""The variable a deploy job reads the Space's read-only token from (``voxplug deploy --read-token-env``)."""
PUSH_SCRUBBERS = ("email", "url", "phone", "digits")
"""What the app scrubs from transcripts before pushing a dataset, unless the user turns it off (docs/privacy.md)."""


def repo_name(value: str, what: str) -> str:
    """A repo id typed in the page, stripped; a clear error when it is empty."""
    repo = (value or "").strip()
    if not repo:
        raise VoxplugError(f"enter the {what} (your-name/repo-name, or just repo-name for your account)")
    return repo


def full_repo_id(repo: str, account: str) -> str:
    """``repo`` with ``account/`` in front when it names no owner (a deploy needs the full id)."""
    return repo if "/" in repo else f"{account}/{repo}"


def dataset_push_step(dataset_dir: Path, repo: str, *, private: bool, scrub: Sequence[str] = PUSH_SCRUBBERS) -> JobStep:
    """``voxplug data push <dataset> <repo> [--public] [--scrub email,url,phone,digits]``."""
    args = ["data", "push", str(dataset_dir), repo, *([] if private else ["--public"])]
    return JobStep("push the dataset", [*args, *(["--scrub", ",".join(scrub)] if scrub else [])])


def publish_step(run_dir: Path, repo: str, *, private: bool) -> JobStep:
    """``voxplug publish <run> --target hub --to <repo> [--public] [--dataset <id>]``.

    When the run's dataset has been pushed since it trained, ``--dataset`` names it in the card (a dataset pushed
    before training is recorded by the run itself).
    """
    args = ["publish", str(run_dir), "--target", "hub", "--to", repo, *([] if private else ["--public"])]
    pushed = _pushed_dataset_of(run_dir)
    return JobStep("publish the model", [*args, *(["--dataset", pushed] if pushed else [])])


def _pushed_dataset_of(run_dir: Path) -> str | None:
    """The Hub id of the app dataset a run trained on (its ``data.jsonl`` manifest), when it has been pushed."""
    import json

    from voxplug.data.store import pushed_hub_id

    try:
        config = json.loads((Path(run_dir) / "training_config.json").read_text(encoding="utf-8"))
        manifest = config["data"]["jsonl"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pushed_hub_id(Path(manifest)) if isinstance(manifest, str) else None


def deploy_step(model_repo: str, *, private: bool, space_id: str = "", hardware: str = "", read_token: bool) -> JobStep:
    """``voxplug deploy <model> --private/--public [--space-id] [--hardware] [--read-token-env HF_READ_TOKEN]``."""
    args = ["deploy", model_repo, "--private" if private else "--public"]
    if space_id.strip():
        args += ["--space-id", space_id.strip()]
    if hardware:
        args += ["--hardware", hardware]
    if read_token:
        args += ["--read-token-env", READ_TOKEN_ENV]
    return JobStep("deploy the demo Space", args)
