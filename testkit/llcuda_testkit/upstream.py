"""The files of llcuda's upstream tier (``nox -s upstream``; the pytest side is :mod:`.upstream_plugin`):
``tests/upstream/stock-outcomes.txt``, what a stock build of the pinned llama.cpp does with upstream's server tests,
and ``tests/upstream/expected.toml``, the failures among them with their reasons."""

from __future__ import annotations

from pathlib import Path

import tomllib


def read_outcomes(path: Path) -> dict[str, str]:
    """``OUTCOME<TAB>NODEID`` lines (a stock summary, a results file) as {nodeid: outcome}."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            outcome, nodeid = line.split("\t", 1)
            out[nodeid] = outcome
    return out


def read_expected(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({nodeid: reason} of the expected failures, {nodeid: reason} of the tests left out of the comparison with
    stock) of expected.toml: ``[[flaky]]`` (rerun once) and ``[[varies]]`` (either outcome; :func:`read_varies`)."""
    data = tomllib.loads(path.read_text())
    lists: list[dict[str, str]] = [{}, {}]
    for index, key in ((0, "xfail"), (1, "flaky"), (1, "varies")):
        for group in data.get(key, []):
            for nodeid in group["tests"]:
                if nodeid in lists[0] or nodeid in lists[1]:
                    raise ValueError(f"{path}: {nodeid} is listed twice")
                lists[index][nodeid] = group["reason"]
    return lists[0], lists[1]


def read_varies(path: Path) -> set[str]:
    """The ``[[varies]]`` tests of expected.toml: their outcome follows the machine's CPU (the random weights'
    answer through the ggml-cpu variant picked for it), on the stock build as on every wheel."""
    data = tomllib.loads(path.read_text())
    return {nodeid for group in data.get("varies", []) for nodeid in group["tests"]}


def differences(stock: dict[str, str], ours: dict[str, str], flaky: set[str]) -> list[str]:
    """Each test of ``ours`` whose outcome is not the stock build's (an expected failure counts as a failure);
    tests listed as flaky are left out: they flip in stock too."""

    def plain(outcome: str) -> str:
        return {"xfailed": "failed", "xpassed": "passed"}.get(outcome, outcome)

    return [
        f"{nodeid}: {outcome} here, {stock.get(nodeid, 'not run')} on stock"
        for nodeid, outcome in sorted(ours.items())
        if nodeid not in flaky and plain(outcome) != stock.get(nodeid)
    ]


def summary_markdown(
    runs: dict[str, dict[str, str]], seconds: dict[str, float], xfail: dict[str, str], flaky: dict[str, str], note: str
) -> str:
    """The tier's result as the docs' Measured page includes it: counts per build, then the expected failures by
    reason."""
    kinds = ("passed", "xfailed", "skipped", "failed", "xpassed")
    lines = [
        f"| llama.cpp's server tests ({note}) | tests | " + " | ".join(kinds) + " | wall |",
        "| --- | --- | " + " | ".join("---" for _ in kinds) + " | --- |",
    ]
    for label, outcomes in runs.items():
        counts = [sum(1 for o in outcomes.values() if o == kind) for kind in kinds]
        took = f"{seconds[label]:.0f} s" if label in seconds else ""
        lines.append(f"| {label} | {len(outcomes)} | " + " | ".join(map(str, counts)) + f" | {took} |")
    by_reason: dict[str, list[str]] = {}
    for nodeid, reason in xfail.items():
        by_reason.setdefault(reason, []).append(nodeid)
    lines += ["", "| expected failure (on the stock build as on every wheel) | tests |", "| --- | --- |"]
    lines += [f"| {reason} | {len(ids)} |" for reason, ids in sorted(by_reason.items(), key=lambda r: -len(r[1]))]
    if flaky:
        lines += [
            "",
            "Left out of the comparison with stock, as they flip on the stock build too (flaky: rerun once) or "
            f"follow the machine's CPU (either outcome): {', '.join(sorted(flaky))}.",
        ]
    return "\n".join(lines) + "\n"
