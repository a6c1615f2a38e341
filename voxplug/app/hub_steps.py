"""The job steps that talk to the Hub: ``voxplug data push``, ``voxplug publish --target hub``, ``voxplug deploy``.

Shared by the Train tab (push the dataset first, deploy after publishing) and the Publish tab. Tokens never appear
here: jobs get them in their environment (see :mod:`voxplug.app.tokens`). What the page typed never becomes an
option: repo ids are checked with ``huggingface_hub``'s own rules (which refuse a leading ``-``), positional values
come after ``--`` (the end of options), and option values are attached with ``=`` (``--to=<repo>``).
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
    """A repo id typed in the page, stripped and checked (``name`` or ``owner/name``); a clear error otherwise."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo = (value or "").strip()
    if not repo:
        raise VoxplugError(f"enter the {what} (your-name/repo-name, or just repo-name for your account)")
    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise VoxplugError(
            f"{what} {repo!r} is not a repo id: use your-name/repo-name or repo-name, with letters, digits, "
            "'-', '_' and '.' (not first or last, never '--' or '..'), 96 characters at most"
        ) from None
    return repo


def full_repo_id(repo: str, account: str) -> str:
    """``repo`` with ``account/`` in front when it names no owner (a deploy needs the full id)."""
    return repo if "/" in repo else f"{account}/{repo}"


def dataset_push_step(dataset_dir: Path, repo: str, *, private: bool, scrub: Sequence[str] = PUSH_SCRUBBERS) -> JobStep:
    """``voxplug data push [--public] [--scrub=email,url,phone,digits] -- <dataset> <repo>``."""
    options = [*([] if private else ["--public"]), *([f"--scrub={','.join(scrub)}"] if scrub else [])]
    return JobStep(
        "push the dataset", ["data", "push", *options, "--", str(dataset_dir), repo_name(repo, "dataset repo")]
    )


def publish_step(run_dir: Path, repo: str, *, private: bool) -> JobStep:
    """``voxplug publish --target hub --to=<repo> [--public] [--dataset=<id>] -- <run>``.

    When the run's dataset has been pushed since it trained, ``--dataset`` names it in the card (a dataset pushed
    before training is recorded by the run itself).
    """
    options = ["--target", "hub", f"--to={repo_name(repo, 'model repo')}", *([] if private else ["--public"])]
    pushed = _pushed_dataset_of(run_dir)
    options += [f"--dataset={pushed}"] if pushed else []
    return JobStep("publish the model", ["publish", *options, "--", str(run_dir)])


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
    """``voxplug deploy --private/--public [--space-id=] [--hardware=] [--read-token-env=HF_READ_TOKEN] -- <model>``."""
    options = ["--private" if private else "--public"]
    if space_id.strip():
        options.append(f"--space-id={repo_name(space_id, 'Space')}")
    if hardware:
        options.append(f"--hardware={hardware}")
    if read_token:
        options.append(f"--read-token-env={READ_TOKEN_ENV}")
    return JobStep("deploy the demo Space", ["deploy", *options, "--", repo_name(model_repo, "model repo to deploy")])
