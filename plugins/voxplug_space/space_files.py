"""The files of a demo Space: ``app.py`` (the demo), a pinned ``requirements.txt`` and ``README.md``.

The requirements pin the versions of voxplug's tested dependency set (``constraints.txt``, :mod:`voxplug.lock`), and
the README front matter pins the Gradio SDK to the locked gradio; a package the lock does not name is pinned to its
installed release. No file ever holds a token: the Space reads the model id from Space variables and a read token
(for private models) from a Space secret, and the README names Hub ids only (``models:`` and its links), never a
local folder.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from voxplug.api import PublishError, hub_repo_ids, locked_version

APP_FILE = "app.py"
DEMO_SOURCE = Path(__file__).with_name("demo_app.py")
PINNED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "huggingface_hub",
    "mistral-common[audio]",
    "soundfile",
    "soxr",
    "numpy",
)
"""What the demo imports, directly or through transformers' Voxtral processor. Gradio comes from ``sdk_version``."""
SHORT_DESCRIPTION_LIMIT = 60  # the Hub rejects longer short_description values


@dataclass
class SpaceCard:
    """What the Space's README front matter says."""

    model_id: str
    title: str
    suggested_hardware: str
    base_model: str | None = None
    emoji: str = "🎙️"
    tags: list[str] = field(default_factory=list)
    short_description: str | None = None
    license: str | None = None


def installed_version(requirement: str) -> str:
    """The installed version of a package (``torch`` 2.13.0+cpu gives 2.13.0: local builds are not on PyPI)."""
    name = requirement.split("[", 1)[0]
    return metadata.version(name).split("+", 1)[0]


def released_version(requirement: str) -> str:
    """The installed version of a package, refusing one a Space could never install from PyPI.

    A development version (``5.26.0.dev0``) and an install from git or from a local folder (PEP 610's
    ``direct_url.json`` says ``vcs_info`` or ``dir_info``) raise :class:`PublishError` naming the package; the
    install's URL is not repeated, as a git URL may hold a token.
    """
    from packaging.version import InvalidVersion, Version

    name = requirement.split("[", 1)[0]
    version = installed_version(requirement)
    origin = _direct_install_origin(metadata.distribution(name))
    if origin is not None:
        raise PublishError(
            f"{name} {version} is installed from {origin}, not from a release: a Space installs requirements.txt "
            f"from PyPI, so its build would fail; install a released {name} (pip install '{name}==X.Y.Z') and deploy "
            "again"
        )
    try:
        development = Version(version).is_devrelease
    except InvalidVersion:
        development = True
    if development:
        raise PublishError(
            f"{name} {version} is a development version, which PyPI does not have: a Space built from these "
            f"requirements would fail; install a released {name} (pip install '{name}==X.Y.Z') and deploy again"
        )
    return version


def _direct_install_origin(distribution: metadata.Distribution) -> str | None:
    """``git`` (or another VCS) or ``a local folder`` when the package was installed from one, else None."""
    import json

    text = distribution.read_text("direct_url.json")
    if not text:
        return None
    try:
        direct = json.loads(text)
    except json.JSONDecodeError:
        return None
    if "vcs_info" in direct:
        return str(direct["vcs_info"].get("vcs") or "a version-control checkout")
    if "dir_info" in direct:
        return "a local folder" + (" (editable)" if direct["dir_info"].get("editable") else "")
    return None


def pinned_version(requirement: str) -> str:
    """The locked version of a package, else its installed release (see :func:`released_version`)."""
    return locked_version(requirement) or released_version(requirement)


def pinned_requirements(packages: tuple[str, ...] | None = None) -> str:
    """``requirements.txt`` with an exact pin of each package (default: what the demo needs): the locked version,
    else the installed release."""
    lines = [f"{requirement}=={pinned_version(requirement)}" for requirement in packages or PINNED_PACKAGES]
    return "\n".join(lines) + "\n"


def front_matter(card: SpaceCard) -> dict[str, object]:
    """The README YAML of the Space: SDK and versions, hardware suggestion, linked models, tags."""
    description = card.short_description or f"Speech to text with {card.model_id.rsplit('/', 1)[-1]}"
    matter: dict[str, object] = {
        "title": card.title,
        "emoji": card.emoji,
        "colorFrom": "indigo",
        "colorTo": "blue",
        "sdk": "gradio",
        "sdk_version": pinned_version("gradio"),
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "app_file": APP_FILE,
        "suggested_hardware": card.suggested_hardware,
        "models": hub_repo_ids([card.model_id, *([card.base_model] if card.base_model else [])]),
        "tags": list(dict.fromkeys(["voxplug", "automatic-speech-recognition", *card.tags])),
        "short_description": description[:SHORT_DESCRIPTION_LIMIT],
        "pinned": False,
    }
    if card.license:
        matter["license"] = card.license
    return matter


def space_readme(card: SpaceCard) -> str:
    """The Space's ``README.md``: front matter plus a few lines on what the demo serves."""
    import yaml

    matter = yaml.safe_dump(front_matter(card), sort_keys=False, allow_unicode=True).strip()
    base_ids = hub_repo_ids([card.base_model]) if card.base_model else []
    base = f" on top of [{base_ids[0]}](https://huggingface.co/{base_ids[0]})" if base_ids else ""
    return (
        f"---\n{matter}\n---\n\n# {card.title}\n\n"
        f"Transcribes speech with [{card.model_id}](https://huggingface.co/{card.model_id}){base}. "
        "Upload a recording or use the microphone, pick a language or leave it on Auto, and press Transcribe.\n\n"
        "Deployed with voxplug. The model id is the `VOXPLUG_MODEL_ID` Space variable; a private model is read "
        "with the `HF_TOKEN` Space secret (a read token).\n"
    )


def write_space_files(folder: Path, card: SpaceCard) -> list[str]:
    """Write ``app.py``, ``requirements.txt`` and ``README.md`` into ``folder``; return their names."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEMO_SOURCE, folder / APP_FILE)
    (folder / "requirements.txt").write_text(pinned_requirements(), encoding="utf-8")
    (folder / "README.md").write_text(space_readme(card), encoding="utf-8")
    return sorted(path.name for path in folder.iterdir())
