"""The GitHub workflows call what exists, the way GitHub requires: a local reusable workflow or action is named
`./path` from the repository root and is there (a reusable workflow also declares `on: workflow_call`), every
`needs:` names a job of the same workflow, and a remote action is pinned to a full commit. A linter passes a
workflow that GitHub rejects at the first release (`uses: $/.github/workflows/wheels.yml` did): this does not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from llcuda_factory import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))


def _on(doc: dict[Any, Any]) -> Any:
    return doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True


def _uses_problem(ref: str, where: str, root: Path) -> str | None:
    if ref.startswith("docker://"):
        return None
    if ref.startswith("./"):
        path = root / ref[2:]
        if path.suffix in (".yml", ".yaml"):
            if not path.is_file():
                return f"{where}: uses {ref}, which does not exist"
            if "workflow_call" not in (_on(yaml.safe_load(path.read_text())) or {}):
                return f"{where}: uses {ref}, which has no `on: workflow_call`"
            return None
        if not any((path / name).is_file() for name in ("action.yml", "action.yaml")):
            return f"{where}: uses {ref}, which is no action (no action.yml)"
        return None
    m = re.fullmatch(r"[\w.-]+/[\w./-]+@([0-9a-f]{40})", ref)
    if m is None:
        if "@" not in ref:
            return f"{where}: uses {ref}: a local workflow or action must start with ./, a remote one needs @"
        return f"{where}: uses {ref}: pin a remote action to a full commit sha"
    return None


def problems(workflow: Path, root: Path = REPO_ROOT) -> list[str]:
    doc = yaml.safe_load(workflow.read_text())
    jobs: dict[str, Any] = doc.get("jobs") or {}
    found: list[str] = []
    for name, job in jobs.items():
        where = f"{workflow.name}: job {name}"
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in jobs:
                found.append(f"{where}: needs {need}, which is no job of this workflow")
        refs = [job["uses"]] if "uses" in job else [s["uses"] for s in job.get("steps", []) if "uses" in s]
        found += [p for ref in refs if (p := _uses_problem(str(ref), where, root))]
    return found


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_calls_what_exists(workflow: Path) -> None:
    assert problems(workflow) == []


def test_the_check_catches_the_broken_release_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "release.yml"
    bad.write_text(
        "on: {release: {types: [published]}}\n"
        "jobs:\n"
        "  build: {uses: $/.github/workflows/wheels.yml}\n"
        "  other: {uses: ./.github/workflows/missing.yml}\n"
        "  check: {needs: biuld, runs-on: x, steps: [{uses: actions/checkout@v4}]}\n"
    )
    assert problems(bad, tmp_path) == [
        "release.yml: job build: uses $/.github/workflows/wheels.yml: a local workflow or action must start with ./,"
        " a remote one needs @",
        "release.yml: job other: uses ./.github/workflows/missing.yml, which does not exist",
        "release.yml: job check: needs biuld, which is no job of this workflow",
        "release.yml: job check: uses actions/checkout@v4: pin a remote action to a full commit sha",
    ]


def test_a_called_workflow_must_declare_workflow_call(tmp_path: Path) -> None:
    called = tmp_path / ".github" / "workflows" / "build.yml"
    called.parent.mkdir(parents=True)
    called.write_text("on: {push: {}}\njobs: {}\n")
    caller = tmp_path / "release.yml"
    caller.write_text("on: {release: {}}\njobs:\n  build: {uses: ./.github/workflows/build.yml}\n")
    assert problems(caller, tmp_path) == [
        "release.yml: job build: uses ./.github/workflows/build.yml, which has no `on: workflow_call`"
    ]


def test_the_release_publishes_what_its_test_job_tested() -> None:
    release = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "release.yml").read_text())
    jobs = release["jobs"]
    assert jobs["build"]["uses"] == "./.github/workflows/recipe.yml"
    assert jobs["test"]["needs"] == "build" and jobs["publish"]["needs"] == "test"
    test_run = " ".join(s.get("run", "") for s in jobs["test"]["steps"])
    assert "nox -s release -- --from-dist" in test_run
    publish_run = " ".join(s.get("run", "") for s in jobs["publish"]["steps"])
    assert "cmp dist/SHA256SUMS tested/SHA256SUMS" in publish_run
    assert "sha256sum --check --strict SHA256SUMS" in publish_run
    recipe = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "recipe.yml").read_text())
    build_run = " ".join(s.get("run", "") for s in recipe["jobs"]["build"]["steps"])
    assert "bash ci/install-build-deps.sh && .venv/bin/nox -s release -- --build-only" in build_run


def test_dependabot_updates_the_actions_and_the_pinned_python_tools_where_they_are_declared() -> None:
    """Each update names an ecosystem whose manifest is where it points: the workflows' `uses:` for github-actions,
    pyproject.toml (whose dependency groups pin cibuildwheel, uv, Sphinx...) for pip."""
    config = yaml.safe_load((REPO_ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    manifests = {"github-actions": ".github/workflows", "pip": "pyproject.toml"}
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert sorted(updates) == sorted(manifests)
    for ecosystem, manifest in manifests.items():
        update = updates[ecosystem]
        assert update["schedule"]["interval"] in ("daily", "weekly", "monthly")
        assert (REPO_ROOT / update["directory"].lstrip("/") / manifest).exists(), (ecosystem, manifest)
    groups = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]
    pins = [r for group in groups.values() for r in group if isinstance(r, str) and "==" in r]
    assert pins, "the dependency groups pin tools for pip's updates to move"
