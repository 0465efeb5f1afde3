"""docker-compose.yml and the Dockerfile agree with the code (static checks, no Docker needed).

The compose stack (Triton, a Flink 2.3 JobManager and TaskManager built from ./Dockerfile,
and a one-shot job submitter) is not run on the project's machines, which have no Docker
engine and no Compose plugin. These tests check what can be checked without them: the file's
structure, and that its ports, paths, model and versions are those of the code. Compose itself
has not parsed the file here (``docker compose config`` needs the plugin).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import shlex
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CLUSTER_JOB = ROOT / "examples" / "cluster_job.py"
SUBMIT_SERVICE = "submit-demo"
TRITON_DEFAULT_HTTP_PORT = 8000  # tritonserver's default --http-port


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def as_argv(command: object) -> list[str]:
    """A service's command (or entrypoint, or healthcheck test) as an argument list."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def option_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in argv, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def published_ports(service: dict) -> dict[int, int]:
    """container port -> host port, from the short ("[ip:]host:container[/proto]") or long form."""
    ports = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        container = int(parts[-1])
        ports[container] = int(parts[-2]) if len(parts) >= 2 else container
    return ports


def volume_mounts(service: dict) -> dict[str, str]:
    """container path -> host path of the service's bind mounts (short or long form)."""
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts[entry["target"]] = entry["source"]
        else:
            source, target = str(entry).split(":")[:2]
            mounts[target] = source
    return mounts


def depends_on(service: dict) -> dict[str, str]:
    """dependency -> condition (the short list form means service_started)."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def flink_properties(service: dict) -> dict[str, str]:
    """FLINK_PROPERTIES as the official image's entrypoint reads them ("key: value" lines)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    properties = {}
    for line in (env.get("FLINK_PROPERTIES") or "").splitlines():
        line = "".join(line.split())
        if line:
            key, _, value = line.partition(":")
            properties[key] = value
    return properties


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            keyword, _, args = current.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
            current = ""
    return instructions


def dockerfile_copies() -> list[tuple[str, str]]:
    """(source in the build context, destination in the image) of each COPY/ADD."""
    copies = []
    for keyword, args in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            paths = [a for a in shlex.split(args) if not a.startswith("--")]
            copies += [(source, paths[-1]) for source in paths[:-1]]
    return copies


def image_path_in_context(image_path: str) -> Path | None:
    """The build-context path a COPY puts at image_path (an existing one first), or None if
    no COPY's destination covers image_path."""
    target = PurePosixPath(image_path)
    candidates = []
    for source, destination in dockerfile_copies():
        destination_path = PurePosixPath(destination)
        if target == destination_path and not destination.endswith("/"):
            candidates.append(ROOT / source)
        elif destination_path in target.parents:
            candidates.append(ROOT / source / target.relative_to(destination_path))
    return next((c for c in candidates if c.exists()), candidates[0] if candidates else None)


def seed_endpoint() -> str:
    sql = (ROOT / "sql" / "seed_example.sql").read_text()
    match = re.search(r"'endpoint'\s*=\s*'([^']+)'", sql)
    assert match, "sql/seed_example.sql has no 'endpoint' = '...' option"
    return match.group(1)


def models_named_in(source: str) -> set[str]:
    """Model names a job script passes: {"model-name": X} (X a literal or a module constant)
    in Python, or 'model-name' = 'X' in SQL text."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets if isinstance(target, ast.Name)
    }
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "model-name":
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        names.add(value.value)
                    elif isinstance(value, ast.Name) and value.id in constants:
                        names.add(constants[value.id])
    names.update(re.findall(r"""['"]model-name['"]\s*=\s*['"]([^'"]+)['"]""", source))
    return names


def test_services_health_checks_and_dependencies(services):
    assert {"triton", "jobmanager", "taskmanager", SUBMIT_SERVICE} <= set(services)
    for name, service in services.items():
        if name == SUBMIT_SERVICE:
            assert str(service.get("restart")) == "no", "the submitter is a one-shot service"
            assert "healthcheck" not in service
        else:
            assert as_argv(service.get("healthcheck", {}).get("test")), f"{name}: no healthcheck"
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck")
    assert depends_on(services["taskmanager"]) == {"jobmanager": "service_healthy"}
    submit_waits_for = depends_on(services[SUBMIT_SERVICE])
    for dependency in ("jobmanager", "triton"):
        assert submit_waits_for.get(dependency) == "service_healthy"


def test_triton_serves_the_model_repository(services):
    triton = services["triton"]
    model_dir = option_value(as_argv(triton["command"]), "--model-repository")
    assert model_dir, "tritonserver is not given --model-repository"
    mounts = volume_mounts(triton)
    assert model_dir in mounts, f"nothing is mounted at {model_dir}"
    host_path = (COMPOSE_FILE.parent / mounts[model_dir]).resolve()
    assert host_path == ROOT / "model_repository"
    assert (host_path / "my_stateful_model" / "config.pbtxt").is_file()
    assert "/v2/health/ready" in " ".join(as_argv(triton["healthcheck"]["test"]))


def test_ports_agree_with_the_code(services):
    triton = services["triton"]
    http_port = int(option_value(as_argv(triton["command"]), "--http-port")
                    or TRITON_DEFAULT_HTTP_PORT)
    ports = published_ports(triton)
    assert ports.get(http_port) == urlsplit(seed_endpoint()).port == 8000
    assert ports.get(8001) == 8001, "Triton's gRPC port"
    assert published_ports(services["jobmanager"]).get(8081) == 8081, "Flink's REST port"

    submit = as_argv(services[SUBMIT_SERVICE]["command"])
    endpoint = urlsplit(option_value(submit, "--endpoint") or "")
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "triton", http_port)
    jobmanager = option_value(submit, "-m")
    assert jobmanager == "jobmanager:8081"


def test_the_submitted_job_calls_a_served_model(services):
    submit = as_argv(services[SUBMIT_SERVICE]["command"])
    assert submit[:2] == ["flink", "run"]
    assert PurePosixPath(option_value(submit, "-py") or "").name == CLUSTER_JOB.name
    if not CLUSTER_JOB.exists():
        pytest.fail(f"{CLUSTER_JOB.relative_to(ROOT)} does not exist (yet), so the model it "
                    "calls cannot be checked against model_repository")
    models = models_named_in(CLUSTER_JOB.read_text())
    assert models, f"no 'model-name' found in {CLUSTER_JOB.relative_to(ROOT)}"
    for model in models:
        assert (ROOT / "model_repository" / model / "config.pbtxt").is_file(), model


def test_dockerfile_flink_version_matches_pyflink():
    pyflink_version = importlib.metadata.version("apache-flink")
    major_minor = ".".join(pyflink_version.split(".")[:2])
    bases = [args.split()[-1] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(bases) == 1, bases
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?flink:(\d+\.\d+)(\.\d+)?-scala_[\d.]+"
                         r"-java(\d+)", bases[0])
    assert match, f"not an official Flink image with explicit Scala and Java: {bases[0]}"
    assert match.group(1) == major_minor, (bases[0], pyflink_version)
    assert int(match.group(3)) >= 11
    installs = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    pins = re.findall(r"apache-flink==([\w.]+)", installs)
    assert pins == [pyflink_version], f"the image must pip-install apache-flink=={pyflink_version}"


def test_dockerfile_provides_what_the_compose_file_uses(services):
    build_services = [name for name, service in services.items() if "build" in service]
    assert set(build_services) >= {"jobmanager", "taskmanager", SUBMIT_SERVICE}
    for name in build_services:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (COMPOSE_FILE.parent / context).resolve() == ROOT
        assert isinstance(build, str) or build.get("dockerfile", "Dockerfile") == "Dockerfile"

    # Every file a command refers to under /opt/pyflink-triton is COPYed there.
    referred = set()
    for name in build_services:
        service = services[name]
        for argv in (as_argv(service.get("command")), as_argv(service.get("entrypoint"))):
            referred.update(arg for arg in argv if arg.startswith("/opt/pyflink-triton/"))
    assert "/opt/pyflink-triton/examples/cluster_job.py" in referred
    for path in sorted(referred):
        source = image_path_in_context(path)
        assert source is not None, f"the Dockerfile does not COPY anything to {path}"
        assert source.exists(), (
            f"{path} would come from {source.relative_to(ROOT)}, which does not exist")

    # The Pythons Flink runs are the venv the Dockerfile creates (and installs into).
    dockerfile = DOCKERFILE.read_text()
    for name in ("jobmanager", "taskmanager", SUBMIT_SERVICE):
        properties = flink_properties(services[name])
        assert properties.get("jobmanager.rpc.address") == "jobmanager", name
        for key in ("python.executable", "python.client.executable"):
            python = PurePosixPath(properties.get(key, ""))
            assert python.parent.name == "bin", (name, key, str(python))
            assert f"-m venv {python.parent.parent}" in dockerfile, (name, key, str(python))
            assert f"{python.parent}/pip install" in dockerfile

    # .dockerignore keeps what the image is built from in the build context.
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for path in ["pyproject.toml", "README.md", "pyflink_triton/__init__.py",
                 *(source.rstrip("/") for source, _ in dockerfile_copies())]:
        for pattern in ignored:
            assert not fnmatch.fnmatch(path, pattern.lstrip("/")), (path, pattern)
            assert not path.startswith(pattern.rstrip("/") + "/"), (path, pattern)
    for must_ignore in (".venv", ".git"):
        assert must_ignore in ignored

