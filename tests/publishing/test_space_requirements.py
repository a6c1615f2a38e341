"""A Space's requirements.txt pins released versions only: packages really installed by pip from a dev version, a
git checkout and a local folder are refused, naming the package, before the Space is created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from publishing_helpers import hub_options
from voxplug_space import space_files
from voxplug_space.space_files import PINNED_PACKAGES, pinned_requirements

from voxplug.errors import PublishError
from voxplug.publishing.publish import deploy_demo, publish_model
from voxplug.testing.hub_server import HubServer


def write_package(folder: Path, name: str, version: str) -> Path:
    """A one-module project built with hatchling."""
    module = name.replace("-", "_")
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text("", encoding="utf-8")
    (folder / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n',
        encoding="utf-8",
    )
    return folder


def pip(*args: str) -> None:
    """Run pip offline, without build isolation: it builds with hatchling and writes the real metadata."""
    command = [sys.executable, "-m", "pip", *args, "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def install_wheel(site: Path, project: Path) -> None:
    """Build ``project``'s wheel and install the file, as one downloaded from an index would be."""
    pip("wheel", "-w", str(project / "dist"), str(project))
    pip("install", "--target", str(site), *map(str, (project / "dist").glob("*.whl")))


def git(folder: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", *identity, *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder where pip installed: a release and a dev version (wheels), a git checkout and a local folder."""
    root = tmp_path_factory.mktemp("packages")
    site = root / "site"
    install_wheel(site, write_package(root / "released", "vp-released", "1.4.0"))
    install_wheel(site, write_package(root / "dev", "vp-dev", "1.5.0.dev0"))
    repo = write_package(root / "repo", "vp-git", "2.0.0")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "release")
    pip("install", "--target", str(site), f"git+file://{repo}")
    pip("install", "--target", str(site), str(write_package(root / "folder", "vp-folder", "3.0.0")))
    return root


@pytest.fixture
def on_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(installed / "site"))
    return installed


def test_released_versions_are_pinned(on_path: Path) -> None:
    assert pinned_requirements(("vp-released", "numpy")).splitlines()[0] == "vp-released==1.4.0"


@pytest.mark.parametrize(
    ("package", "message"),
    [
        ("vp-dev", r"^vp-dev 1.5.0.dev0 is a development version, which PyPI does not have: a Space built"),
        ("vp-git", r"^vp-git 2.0.0 is installed from git, not from a release: a Space installs requirements.txt"),
        ("vp-folder", r"^vp-folder 3.0.0 is installed from a local folder, not from a release"),
    ],
)
def test_unreleased_installs_are_refused(on_path: Path, package: str, message: str) -> None:
    with pytest.raises(PublishError, match=message) as raised:
        pinned_requirements(("vp-released", package))
    assert f"pip install '{package}==X.Y.Z'" in str(raised.value)
    assert str(on_path) not in str(raised.value)  # nor where it came from: a git URL may hold a token


def test_the_space_is_not_created_for_a_dev_install(
    on_path: Path, full_run: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_model(full_run, target="hub", options=hub_options(hub, private=False))
    monkeypatch.setattr(space_files, "PINNED_PACKAGES", (*PINNED_PACKAGES, "vp-dev"))
    with pytest.raises(PublishError, match="vp-dev 1.5.0.dev0 is a development version"):
        deploy_demo("tester/full-run", options=hub_options(hub))
    assert not any(kind == "space" for kind, _ in hub.store.repos)


def test_requirements_and_sdk_pin_the_locked_versions_not_the_installed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock that differs from what is installed wins: the Space runs the tested set."""
    from voxplug import lock

    fake = tmp_path / "constraints.txt"
    fake.write_text("# a lock\nTransformers==5.0.1\nmistral_common==1.0.2\ngradio==6.0.3\n", encoding="utf-8")
    monkeypatch.setattr(lock, "lock_path", lambda: fake)
    lock.locked_versions.cache_clear()
    try:
        requirements = pinned_requirements().splitlines()
        sdk = space_files.front_matter(space_files.SpaceCard("user/m", "t", "cpu-basic"))["sdk_version"]
    finally:
        lock.locked_versions.cache_clear()
    assert "transformers==5.0.1" in requirements and "mistral-common[audio]==1.0.2" in requirements
    assert sdk == "6.0.3"
    installed_peft = space_files.installed_version("peft")  # not in this lock: its installed release
    assert f"peft=={installed_peft}" in requirements


def test_the_shipped_lock_names_every_package_the_space_pins() -> None:
    from voxplug.lock import locked_version

    assert all(locked_version(name) for name in (*PINNED_PACKAGES, "gradio"))
