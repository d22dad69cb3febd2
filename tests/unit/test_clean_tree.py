"""CI never rewrites the tree it tests: `ci/check-clean-tree.sh` fails on a modified tracked file or a stray one,
`.ci/run` ends with it and writes its measurements to the ignored benchmarks/latest/, and `record` is the one way
they become the recorded figures in benchmarks/results/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT, results
from llcuda_factory.__main__ import main as factory_main
from llcuda_factory.errors import FactoryError

CHECK = REPO_ROOT / "ci" / "check-clean-tree.sh"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "benchmarks" / "results" / "ci_time.md").write_text("| recorded |\n")
    (repo / ".gitignore").write_text("/benchmarks/latest/\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=GIT_ENV)
    return repo


def _check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CHECK), str(repo)], capture_output=True, text=True, env=GIT_ENV)


def test_a_checkout_as_committed_passes_with_measurements_in_the_ignored_folder(checkout: Path) -> None:
    (checkout / "benchmarks" / "latest").mkdir()
    (checkout / "benchmarks" / "latest" / "ci_time.md").write_text("| new |\n")
    proc = _check(checkout)
    assert proc.returncode == 0, proc.stderr
    assert "is as committed" in proc.stdout


def test_a_rewritten_tracked_file_fails_and_is_named(checkout: Path) -> None:
    (checkout / "benchmarks" / "results" / "ci_time.md").write_text("| rewritten by CI |\n")
    proc = _check(checkout)
    assert proc.returncode == 1
    assert " M benchmarks/results/ci_time.md" in proc.stderr.splitlines()


def test_a_file_neither_tracked_nor_ignored_fails_and_is_named(checkout: Path) -> None:
    (checkout / "benchmarks" / "stray.json").write_text("{}")
    proc = _check(checkout)
    assert proc.returncode == 1
    assert "?? benchmarks/stray.json" in proc.stderr.splitlines()


def test_ci_writes_its_time_to_the_ignored_folder_and_ends_with_the_check() -> None:
    run = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in run.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "bash ci/check-clean-tree.sh"
    assert ">benchmarks/latest/ci_time.md" in run
    assert "benchmarks/results" not in "\n".join(commands)
    ignored = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "check-ignore", "-q", "benchmarks/latest/ci_time.md"], check=False
    )
    assert ignored.returncode == 0, "benchmarks/latest/ must be ignored by git"


def test_record_copies_the_latest_measurements_over_the_recorded_ones(tmp_path: Path) -> None:
    latest, recorded = tmp_path / "latest", tmp_path / "results"
    latest.mkdir()
    recorded.mkdir()
    (latest / "ci_time.md").write_text("| new |\n")
    (latest / "upstream.md").write_text("| counts |\n")
    (recorded / "ci_time.md").write_text("| old |\n")
    (recorded / "sizes.md").write_text("| untouched |\n")
    assert factory_main(["record", "--source", str(latest), "--dest", str(recorded)]) == 0
    assert {p.name: p.read_text() for p in recorded.iterdir()} == {
        "ci_time.md": "| new |\n",
        "upstream.md": "| counts |\n",
        "sizes.md": "| untouched |\n",
    }


def test_record_with_nothing_measured_is_one_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    recorded = tmp_path / "results"
    recorded.mkdir()
    (recorded / "ci_time.md").write_text("| old |\n")
    with pytest.raises(FactoryError, match=r"nothing to record: .*latest holds no measurement; run `bash .ci/run`"):
        results.record(tmp_path / "latest", recorded)
    assert [p.name for p in recorded.iterdir()] == ["ci_time.md"]
    assert (recorded / "ci_time.md").read_text() == "| old |\n"


def test_what_the_release_rehearsal_leaves_beside_dist_is_ignored() -> None:
    """`nox -s release` leaves its dependencies and the house it tested (bundles, SHA256SUMS, ...) for inspection."""
    from llcuda_testkit import rehearsal

    for folder in (rehearsal.DEPS, rehearsal.TESTED_HOUSE):
        for name in ("SHA256SUMS", "offline-cpu/requirements.txt"):
            path = f"{folder}/{name}"
            ignored = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", path], check=False)
            assert ignored.returncode == 0, f"{path} is not ignored by git"
