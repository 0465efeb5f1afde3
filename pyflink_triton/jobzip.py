"""The job zip: what ``flink run -pyfs <zip>`` needs to run this package on a Flink cluster.

Flink extracts a ``.zip`` given to ``-pyfs`` (``python.files``) and puts it on the PYTHONPATH of
the client that runs the job script and of every Python worker, so compiled extensions inside
it load (it is not imported through zipimport). A cluster that runs Python UDFs already has
``apache-flink`` in its Python, so the zip carries this package plus every distribution it
requires that apache-flink does not bring (tritonclient and its HTTP/gRPC dependencies, some of
them compiled). Those are copied from the current environment: the cluster's Python must be the
same version on the same platform, as with Flink's own ``-pyarch`` virtual environments.
"""

from __future__ import annotations

import platform
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .errors import TritonConfigError

DISTRIBUTION = "pyflink-triton"
# What a cluster's Python has anyway: its TaskManagers need it to run any Python function.
RUNTIME = "apache-flink"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class JobZip:
    path: Path
    distributions: list[tuple[str, str]]  # (name, version) of each bundled distribution
    python: str  # the Python version and platform the compiled parts were built for


def requirement_closure(name: str, extras: Iterable[str] = ()) -> dict[str, metadata.Distribution]:
    """The installed distribution ``name`` and everything it requires, by canonical name.

    Markers are evaluated for this interpreter and for the extras each requirement asks for
    (``tritonclient[grpc,http]`` pulls in grpcio, geventhttpclient, ...).
    """
    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    pending: list[tuple[str, set[str]]] = [(name, set(extras))]
    while pending:
        requirement, wanted = pending.pop()
        key = canonicalize_name(requirement)
        if key in found and wanted <= extras_seen[key]:
            continue
        try:
            distribution = found.get(key) or metadata.distribution(requirement)
        except metadata.PackageNotFoundError:
            raise TritonConfigError(
                f"Cannot build the job zip: '{requirement}' (required by {name}) is not "
                "installed in this Python environment. Install pyflink-triton with pip "
                "first.") from None
        found[key] = distribution
        extras_seen.setdefault(key, set()).update(wanted)
        for line in distribution.requires or []:
            dependency = Requirement(line)
            environments = [{"extra": extra} for extra in extras_seen[key] or {""}]
            if dependency.marker and not any(dependency.marker.evaluate(env)
                                             for env in environments):
                continue
            pending.append((dependency.name, set(dependency.extras)))
    return found


def bundled_distributions() -> list[metadata.Distribution]:
    """What the zip carries besides this package: our requirements that apache-flink lacks."""
    ours = requirement_closure(DISTRIBUTION)
    flinks = requirement_closure(RUNTIME)
    missing = set(ours) - set(flinks) - {canonicalize_name(DISTRIBUTION)}
    return [ours[key] for key in sorted(missing)]


def _package_files() -> Iterator[tuple[Path, str]]:
    """This package's own files, from its directory (an editable install has no RECORD)."""
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path, f"{PACKAGE_DIR.name}/{path.relative_to(PACKAGE_DIR).as_posix()}"


def _distribution_files(distribution: metadata.Distribution) -> Iterator[tuple[Path, str]]:
    """The files a distribution installed into site-packages (scripts in bin/ left out)."""
    for file in distribution.files or []:
        name = file.as_posix()
        if name.startswith("..") or "__pycache__" in file.parts or name.endswith(".pyc"):
            continue
        path = Path(str(file.locate()))
        if path.is_file():
            yield path, name


def build_job_zip(output: str | Path) -> JobZip:
    """Write the job zip to ``output`` (its folder is created) and describe what it holds."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    distributions = bundled_distributions()
    written: set[str] = set()
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        files = [_package_files(), *(_distribution_files(d) for d in distributions)]
        for source, name in (entry for group in files for entry in group):
            if name not in written:  # namespace folders' files can be listed twice
                written.add(name)
                archive.write(source, name)
    partial.replace(output)
    return JobZip(
        output,
        [(d.metadata["Name"], d.version) for d in distributions],
        f"Python {platform.python_version()} on {sys.platform}-{platform.machine()}")
