"""Files that must agree with the code: the generated options reference, the compose file."""

from __future__ import annotations

from pathlib import Path

import yaml

from pyflink_triton.options import option_specs, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_options_reference_is_generated_from_the_spec():
    committed = (ROOT / "docs" / "options.md").read_text()
    assert committed == reference_markdown(), (
        "docs/options.md is stale: python -m pyflink_triton options-reference > docs/options.md")
    for spec in option_specs():
        assert f"| `{spec.key}` |" in committed


def test_compose_serves_the_committed_model_repository_on_the_demo_ports():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    triton = compose["services"]["triton"]
    assert "./model_repository:/models:ro" in triton["volumes"]
    assert "--model-repository=/models" in triton["command"]
    assert "8000:8000" in triton["ports"]  # sql/seed_example.sql's endpoint
    assert "http://localhost:8000/v2/models" in (ROOT / "sql" / "seed_example.sql").read_text()
    for model in ("my_stateful_model", "add_one"):
        assert (ROOT / "model_repository" / model / "config.pbtxt").exists()
