"""What the benchmarks record about the machine they ran on, and the Triton they measured."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import urllib.request
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine_facts() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "platform": platform.platform(), "python": platform.python_version()}


def server_version(endpoint: str) -> str:
    """The version the Triton at ``endpoint`` (http://host:port) reports."""
    with urllib.request.urlopen(f"{endpoint}/v2", timeout=5) as response:
        return str(json.load(response)["version"])


def machine_and_versions(endpoint: str,
                         load_before: tuple[float, float, float]) -> dict[str, Any]:
    """The machine, the versions of PyFlink, tritonclient and the Triton at ``endpoint``, and
    the load averages before (``load_before``) and after a PyFlink benchmark."""
    from importlib.metadata import version

    return {**machine_facts(),
            "apache-flink": version("apache-flink"), "tritonclient": version("tritonclient"),
            "tritonserver": server_version(endpoint),
            "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}
