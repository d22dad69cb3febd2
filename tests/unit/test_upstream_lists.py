"""The upstream tier's checked-in lists (tests/upstream/): the expected failures are exactly the stock build's, each
with its reason; and the comparison that `nox -s upstream -- --against-stock` makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from llcuda_testkit.upstream import differences, read_expected, read_outcomes

UPSTREAM = Path(__file__).resolve().parents[1] / "upstream"


def test_the_expected_failures_are_the_stock_builds_failures() -> None:
    stock = read_outcomes(UPSTREAM / "stock-outcomes.txt")
    xfail, flaky = read_expected(UPSTREAM / "expected.toml")
    failed = {n for n, o in stock.items() if o == "failed"}
    assert stock and set(stock.values()) <= {"passed", "failed", "skipped"}
    assert sorted(failed - set(xfail) - set(flaky)) == [], "stock failures with no entry in expected.toml"
    assert sorted(set(xfail) - failed) == [], "expected failures that pass (or do not exist) on the stock build"
    assert sorted(set(flaky) - set(stock)) == [], "flaky tests the stock run does not have"
    assert all(reason.strip() for reason in [*xfail.values(), *flaky.values()])


def test_a_test_listed_twice_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "expected.toml"
    listed.write_text('[[xfail]]\nreason = "a"\ntests = ["t::x"]\n[[flaky]]\nreason = "b"\ntests = ["t::x"]\n')
    with pytest.raises(ValueError, match=r"t::x is listed twice"):
        read_expected(listed)


def test_differences_count_an_expected_failure_as_a_failure_and_leave_out_flaky_tests() -> None:
    stock = {"a": "passed", "b": "failed", "c": "skipped", "f": "failed"}
    assert differences(stock, {"a": "passed", "b": "xfailed", "c": "skipped", "f": "passed"}, {"f"}) == []
    assert differences(stock, {"a": "failed", "b": "xpassed", "n": "passed"}, set()) == [
        "a: failed here, passed on stock",
        "b: xpassed here, failed on stock",
        "n: passed here, not run on stock",
    ]
