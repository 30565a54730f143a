"""The rig's pure parts: verdicts from limits, the catalog, JUnit XML and JSON reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import junitparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.catalog import all_cases, catalog_markdown, select
from hil.measurement import Measurement, Verdict, worst
from hil.report import junit_xml, results_json
from hil.runner import CaseResult, RunInfo
from tests.hil_broken_devices import BROKEN_DEVICES
from tests.hil_support import assert_valid_junit

DOC = Path(__file__).parent.parent / "docs" / "hil.md"


def _between(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name} begin -->\n(.*?)<!-- {name} end -->", text, re.S)
    assert m, f"docs/hil.md lacks the {name} markers"
    return m.group(1)


def test_the_catalog_in_the_doc_is_the_generated_one() -> None:
    assert _between(DOC.read_text(), "catalog") == catalog_markdown()


def test_the_broken_device_table_in_the_doc_matches_the_variants() -> None:
    table = _between(DOC.read_text(), "broken")
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|$", table, re.M))
    expected = {
        v.__name__: ", ".join(f"`{c}`" for c in cases) for v, cases in BROKEN_DEVICES.items()
    }
    assert {k: v.strip() for k, v in rows.items()} == expected


def test_case_ids_are_unique_stable_and_each_has_a_statement_and_section() -> None:
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Z]{2}-\d{3}", i) for i in ids)
    assert all(c.statement and c.section for c in cases)


def test_select_by_suite_and_by_id() -> None:
    assert {c.suite for c in select(["latency"], [])} == {"latency"}
    assert [c.id for c in select([], ["HS-001"])] == ["HS-001"]
    with pytest.raises(KeyError, match="XX-999"):
        select([], ["XX-999"])


@given(
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    low=st.floats(-1e3, 0),
    high=st.floats(0, 1e3),
    band=st.floats(0, 1),
)
def test_verdict_follows_the_limits_and_the_band(
    value: float, low: float, high: float, band: float
) -> None:
    m_lo, m_hi = low + band * (high - low) / 2, high - band * (high - low) / 2
    m = Measurement("x", value, "", low, high, m_lo, m_hi)
    if value < low or value > high:
        assert m.verdict is Verdict.FAIL
    elif value < m_lo or value > m_hi:
        assert m.verdict is Verdict.MARGINAL
    else:
        assert m.verdict is Verdict.PASS


def test_nan_fails_and_the_worst_verdict_wins() -> None:
    assert Measurement("x", float("nan"), "").verdict is Verdict.FAIL
    assert worst([Verdict.PASS, Verdict.MARGINAL]) is Verdict.MARGINAL
    assert worst([Verdict.FAIL, Verdict.ERROR, Verdict.PASS]) is Verdict.ERROR
    assert worst([]) is Verdict.PASS


def _results() -> list[CaseResult]:
    by_id = {c.id: c for c in all_cases()}
    m = Measurement("answer time", 0.8, "ms", 0, 50, None, 30)
    return [
        CaseResult(by_id["HS-001"], Verdict.PASS, [m], 0.25, teardown="off"),
        CaseResult(
            by_id["NK-001"],
            Verdict.FAIL,
            [Measurement("answer", 0, "code", 1, 1)],
            0.1,
            "answer = 0 not in [1, 1]",
        ),
        CaseResult(by_id["WD-001"], Verdict.ERROR, [], 10.0, "timed out after 10 s"),
        CaseResult(by_id["SG-001"], Verdict.SKIP, [], 0.0, "needs a signing key"),
    ]


def test_junit_is_valid_has_properties_and_a_timeout_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "hil.xml"
    path.write_bytes(junit_xml(RunInfo("serial:///dev/pts/9", 3), _results()))
    assert_valid_junit(path)
    xml = junitparser.JUnitXml.fromfile(str(path))
    suite = next(iter(xml))
    props = {p.name: p.value for p in suite.properties()}
    assert props["url"] == "serial:///dev/pts/9" and props["seed"] == "3"
    cases = {c.name.split()[0]: c for c in suite}
    assert cases["HS-001"].is_passed
    assert isinstance(cases["NK-001"].result[0], junitparser.Failure)
    assert isinstance(cases["WD-001"].result[0], junitparser.Error)
    assert isinstance(cases["SG-001"].result[0], junitparser.Skipped)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 1, 1, 1)
    text = path.read_text()
    assert 'name="answer time.high" value="50"' in text


def test_json_carries_the_same_results() -> None:
    doc = json.loads(results_json(RunInfo("sim://", 0), _results()))
    assert [c["verdict"] for c in doc["cases"]] == ["PASS", "FAIL", "ERROR", "SKIP"]
    assert doc["cases"][0]["measurements"][0]["high"] == 50
    assert doc["summary"]["FAIL"] == 1
