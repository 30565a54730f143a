"""Reports of a run: JUnit XML, JSON and the stdout table. Both files are rewritten whole
(to a temporary file, then renamed) after every case, so a rig killed at any moment leaves
a complete, valid file with the cases done so far."""

from __future__ import annotations

import json
import os
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from firmware_bridge.framing import PROTOCOL_MAJOR, PROTOCOL_MINOR
from hil.measurement import Verdict
from hil.runner import CaseResult, RunInfo


def _atomic_write(path: str, data: bytes) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def suite_properties(run: RunInfo) -> dict[str, str]:
    info = run.info
    props = {
        "url": run.url,
        "seed": str(run.seed),
        "rig_protocol": f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}",
    }
    if info is not None:
        props |= {
            "device_id": info.device_id,
            "firmware_version": info.firmware_version,
            "protocol_version": f"{info.major}.{info.minor}",
        }
    return props


def _case_properties(result: CaseResult) -> list[tuple[str, str]]:
    props = [
        ("id", result.case.id),
        ("section", result.case.section),
        ("suite", result.case.suite),
        ("verdict", result.verdict.value),
    ]
    for m in result.measurements:
        props.append((f"{m.name}.value", f"{m.value:.9g}"))
        props.append((f"{m.name}.unit", m.unit))
        props.append((f"{m.name}.low", "" if m.low is None else f"{m.low:.9g}"))
        props.append((f"{m.name}.high", "" if m.high is None else f"{m.high:.9g}"))
        props.append((f"{m.name}.verdict", m.verdict.value))
    return props


def junit_xml(run: RunInfo, results: list[CaseResult]) -> bytes:
    failures = sum(r.verdict in (Verdict.FAIL,) for r in results)
    errors = sum(r.verdict is Verdict.ERROR for r in results)
    skipped = sum(r.verdict is Verdict.SKIP for r in results)
    total_s = sum(r.duration_s for r in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {**counts, "time": f"{total_s:.3f}", "name": "neurostim-hil"})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": "neurostim-hil",
            **counts,
            "skipped": str(skipped),
            "time": f"{total_s:.3f}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run.started_unix_s)),
            "hostname": socket.gethostname(),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in suite_properties(run).items():
        ET.SubElement(props, "property", {"name": name, "value": value})
    for r in results:
        tc = ET.SubElement(
            suite,
            "testcase",
            {
                "name": r.case.title,
                "classname": f"hil.{r.case.suite}",
                "time": f"{r.duration_s:.3f}",
            },
        )
        cprops = ET.SubElement(tc, "properties")
        for name, value in _case_properties(r):
            ET.SubElement(cprops, "property", {"name": name, "value": value})
        if r.verdict is Verdict.FAIL:
            ET.SubElement(tc, "failure", {"message": r.message, "type": "FAIL"}).text = r.message
        elif r.verdict is Verdict.ERROR:
            ET.SubElement(tc, "error", {"message": r.message, "type": "ERROR"}).text = r.message
        elif r.verdict is Verdict.SKIP:
            ET.SubElement(tc, "skipped", {"message": r.message})
        lines = [
            f"{m.name} = {m.value:g} {m.unit} {m.limits_text()} {m.verdict.value}"
            for m in r.measurements
        ]
        lines += [f"note: {n}" for n in r.notes] + [f"teardown: {r.teardown}"]
        ET.SubElement(tc, "system-out").text = "\n".join(lines)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def results_json(run: RunInfo, results: list[CaseResult], interrupted: bool = False) -> bytes:
    doc = {
        "rig": "neurostim hil",
        "properties": suite_properties(run),
        "interrupted": interrupted,
        "summary": {v.value: sum(r.verdict is v for r in results) for v in Verdict},
        "cases": [
            {
                "id": r.case.id,
                "statement": r.case.statement,
                "section": r.case.section,
                "suite": r.case.suite,
                "verdict": r.verdict.value,
                "message": r.message,
                "duration_s": round(r.duration_s, 6),
                "teardown": r.teardown,
                "notes": r.notes,
                "measurements": [m.as_dict() for m in r.measurements],
            }
            for r in results
        ],
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


class Reports:
    """Rewrites the requested files after every case."""

    def __init__(self, run: RunInfo, junit_path: str | None, json_path: str | None) -> None:
        self.run = run
        self.junit_path = junit_path
        self.json_path = json_path
        self.results: list[CaseResult] = []

    def add(self, result: CaseResult) -> None:
        self.results.append(result)
        self.write()

    def write(self, interrupted: bool = False) -> None:
        if self.junit_path:
            _atomic_write(self.junit_path, junit_xml(self.run, self.results))
        if self.json_path:
            _atomic_write(self.json_path, results_json(self.run, self.results, interrupted))


def table(results: list[CaseResult]) -> str:
    """The readable table on stdout: one line per measurement, the case verdict first."""
    rows = [("case", "verdict", "measurement", "value", "limits")]
    for r in results:
        first = True
        for m in r.measurements or []:
            rows.append(
                (
                    r.case.id if first else "",
                    r.verdict.value if first else "",
                    m.name,
                    f"{m.value:.6g} {m.unit}".strip(),
                    m.limits_text(),
                )
            )
            first = False
        if first:
            rows.append((r.case.id, r.verdict.value, r.message or "-", "", ""))
        elif r.verdict in (Verdict.ERROR, Verdict.SKIP) and r.message:
            rows.append(("", "", r.message, "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return (
        "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )
        + "\n"
    )
