"""docs/protocol.md section 6 shows these exact bytes; keep the doc and the code in step."""

from __future__ import annotations

import re
from pathlib import Path

from firmware_bridge.framing import FrameDecoder, encode_frame
from firmware_bridge.messages import Heartbeat, MsgType, parse_payload

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _doc_bytes(label: str) -> bytes:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 6. Worked example") :]
    match = re.search(rf"^{label}\s+((?:[0-9a-f]{{2}} ?)+)", section, re.MULTILINE)
    assert match, f"no '{label}' line in the worked example"
    return bytes.fromhex(match.group(1))


def test_worked_example_wire_bytes_match_the_implementation() -> None:
    wire = encode_frame(MsgType.HEARTBEAT, Heartbeat(42, 0).encode(), 7, 1_000_000)
    assert wire == _doc_bytes("wire")


def test_worked_example_decodes_to_the_documented_fields() -> None:
    frame = FrameDecoder().feed(_doc_bytes("wire"))[0]
    assert (frame.version, frame.msg_type, frame.flags, frame.seq) == (1, 0x20, 0, 7)
    assert frame.timestamp_us == 1_000_000
    assert parse_payload(frame.msg_type, frame.payload) == Heartbeat(42, 0)
    assert frame.payload == _doc_bytes("payload")


def _doc_payload_sizes() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| type | name | direction |") : text.index("A receiver skips")]
    sizes = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 5:
            sizes[cells[1]] = cells[4]
    return sizes


def test_fixed_payload_sizes_in_the_message_table_match_the_codec() -> None:
    from tests.protocol_fixtures import EXAMPLES

    sizes = _doc_payload_sizes()
    fixed = {type(m).MSG_TYPE.name: len(m.encode()) for m in EXAMPLES}  # type: ignore[attr-defined]
    for name in (
        "STIM_SET",
        "ACK",
        "NACK",
        "STIM_STATE",
        "HEARTBEAT",
        "ESTOP",
        "BYE",
        "ESTOP_CLEAR",
    ):
        assert sizes[name] == str(fixed[name]), name
    assert sizes["STATUS"] == "6 + 4·electrodes"
