"""The sdist and the wheel built from this tree: their files, their metadata, the wheel installed.

Both are built once, from a copy of the tree (the files git sees: tracked, or untracked and not
ignored) in a temporary folder, so that setuptools' ``build/`` and ``*.egg-info`` never land in
the checkout. The sdist comes from setuptools' PEP 517 backend run by this interpreter with
pyflink, tritonclient and numpy unimportable: the version must be read from
``pyflink_triton/__init__.py`` without importing the package. The wheel is built from the sdist
by pip, as ``python -m build`` does, offline (``--no-build-isolation``) with the setuptools the
``test`` extra installs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import pyflink_triton

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyflink_triton"
VERSION = pyflink_triton.__version__
COMMANDS = {"sql", "sql-client-files", "server", "options-reference", "job-zip"}

BUILD_SDIST = """
import sys
for name in ("pyflink", "tritonclient", "numpy"):
    sys.modules[name] = None  # so setuptools cannot fall back to importing pyflink_triton
from setuptools import build_meta
build_meta.build_sdist(sys.argv[1])
"""

# What the installed wheel says about itself, run from a folder that holds no source.
DESCRIBE_INSTALLED = """
import json
from importlib import metadata
from pathlib import Path
import pyflink_triton
print(json.dumps({
    "file": pyflink_triton.__file__,
    "version": pyflink_triton.__version__,
    "metadata_version": metadata.version("pyflink-triton"),
    "metadata_location": str(metadata.distribution("pyflink-triton").locate_file("")),
    "typed": (Path(pyflink_triton.__file__).parent / "py.typed").is_file(),
}))
"""


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    site: Path  # the wheel installed with pip install --target
    workdir: Path  # an empty folder: neither the checkout nor the copy is importable from it


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, (
        f"{command} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def copy_tree(destination: Path) -> None:
    """The checkout's files as git sees them; without git, everything but dot-folders."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(
            ".*", "__pycache__", "*.egg-info", "build", "dist"))
        return
    for name in os.fsdecode(listing).split("\0"):
        source = ROOT / name
        if name and source.is_file():  # (a tracked file may have been deleted)
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def installed_env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("packaging")
    source, dist, site, workdir = (root / name for name in ("source", "dist", "site", "work"))
    dist.mkdir()
    workdir.mkdir()
    copy_tree(source)
    run([sys.executable, "-c", BUILD_SDIST, str(dist)], cwd=source)
    (sdist,) = dist.glob("*.tar.gz")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # Offline: the test extra installs the build-system's setuptools here.
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(sdist)],
        cwd=workdir)
    (wheel,) = dist.glob("*.whl")
    run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], cwd=workdir)
    return Built(sdist, wheel, site, workdir)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def package_modules() -> set[str]:
    """Every module of the source tree, as a path relative to the tree ('pyflink_triton/...')."""
    return {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")
            if "__pycache__" not in path.parts}


def test_version_has_one_source_that_setuptools_reads_statically():
    project = pyproject()
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "pyflink_triton.__version__"}
    # setuptools reads a plain literal without importing the package (which imports pyflink).
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    values = [node.value for node in tree.body if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)]
    assert len(values) == 1
    assert isinstance(values[0], ast.Constant)
    assert values[0].value == VERSION
    assert str(Version(VERSION)) == VERSION  # a canonical PEP 440 version


def test_changelog_newest_release_is_the_package_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    released = [heading for heading in headings if heading != "Unreleased"]
    assert released[0] == VERSION, f"CHANGELOG.md's newest release is {released[0]}"


def test_wheel_holds_every_module_and_the_typing_marker(built: Built):
    assert built.wheel.name == f"pyflink_triton-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    dist_info = f"pyflink_triton-{VERSION}.dist-info"
    assert package_modules() <= names, f"missing: {sorted(package_modules() - names)}"
    assert "pyflink_triton/py.typed" in names
    assert "pyflink_triton/server/__main__.py" in names
    assert {name.split("/")[0] for name in names} == {"pyflink_triton", dist_info}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert any(name.startswith(f"{dist_info}/") and name.endswith("/LICENSE") for name in names)


def test_wheel_metadata_has_the_version_and_the_requirements(built: Built):
    with zipfile.ZipFile(built.wheel) as wheel:
        raw = wheel.read(f"pyflink_triton-{VERSION}.dist-info/METADATA").decode()
    wheel_metadata = HeaderParser().parsestr(raw)
    project = pyproject()["project"]
    assert canonicalize_name(wheel_metadata["Name"]) == "pyflink-triton"
    assert wheel_metadata["Version"] == VERSION
    assert SpecifierSet(wheel_metadata["Requires-Python"]) == SpecifierSet(
        project["requires-python"])

    def normal(requirement: Requirement) -> tuple:
        return (canonicalize_name(requirement.name), frozenset(requirement.extras),
                requirement.specifier, str(requirement.marker or ""))

    required = {normal(Requirement(line))
                for line in wheel_metadata.get_all("Requires-Dist") or []
                if Requirement(line).marker is None}  # (the extras' lines have markers)
    assert required == {normal(Requirement(line)) for line in project["dependencies"]}
    assert {canonicalize_name(extra) for extra in wheel_metadata.get_all("Provides-Extra")} == {
        canonicalize_name(extra) for extra in project["optional-dependencies"]}


def test_sdist_holds_the_project_files_and_the_package(built: Built):
    match = re.fullmatch(rf"(pyflink[-_]triton-{re.escape(VERSION)})\.tar\.gz", built.sdist.name)
    assert match, built.sdist.name
    prefix = match.group(1)
    with tarfile.open(built.sdist) as sdist:
        names = {name.removeprefix(f"{prefix}/") for name in sdist.getnames()}
        pkg_info = sdist.extractfile(f"{prefix}/PKG-INFO").read().decode()
    expected = {"pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "PKG-INFO",
                "pyflink_triton/py.typed", *package_modules()}
    assert expected <= names, f"missing: {sorted(expected - names)}"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert HeaderParser().parsestr(pkg_info)["Version"] == VERSION


def test_installed_wheel_imports_and_runs_its_command_line(built: Built):
    env = installed_env(built.site)
    described = json.loads(run([sys.executable, "-c", DESCRIBE_INSTALLED], built.workdir, env))
    assert Path(described["file"]).is_relative_to(built.site), described["file"]
    assert Path(described["metadata_location"]) == built.site
    assert described["version"] == described["metadata_version"] == VERSION
    assert described["typed"]

    usage = run([sys.executable, "-m", "pyflink_triton", "--help"], built.workdir, env)
    # argparse lists each subcommand at the start of an indented line, and in "{a,b}" unless
    # the subparsers have a metavar.
    listed = set(re.findall(r"^\s+([a-z][\w-]*)(?=\s{2,}|$)", usage, flags=re.MULTILINE))
    for choices in re.findall(r"\{([^}]*)\}", usage):
        listed.update(choices.split(","))
    assert listed >= COMMANDS, f"missing commands: {sorted(COMMANDS - listed)}\n{usage}"
