"""Property-based fuzz of every decoder in doorbell.core.protocol (hypothesis).

The one property: whatever arrives (any depth, size, encoding or JSON type in
any field), a decoder returns a valid message or raises ProtocolError with a
reason. Nothing else may escape: an escaping RecursionError or ValueError is
what let a nested command crash the agent's handler (issue 16, finding 5).
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from doorbell.core import protocol as p

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MODELS: list[type[p.Message]] = [
    p.DeviceEvent, p.ClipMessage, p.SnapshotCommand, p.PrivacyCommand, p.SettingsCommand, p.PoliceRequest,
    p.RequestClosed, p.Decision, p.Revoke, p.Result, p.GrantState, p.RpcCall, p.RpcReply,
]
KINDS = [None, *p.MAX_PAYLOAD]

# Valid examples: type confusion mutates their fields one by one.
VALID: dict[type[p.Message], dict[str, Any]] = {
    p.DeviceEvent: {"device_id": "dev-a", "type": "ring", "ts": 1_800_000_000.0},
    p.ClipMessage: {"clip_id": "20261123T212719123Z-1a2b3c", "device_id": "dev-a", "trigger": "ring",
                    "started_at": 1_800_000_000.0, "ended_at": 1_800_000_010.0, "trigger_at": 1_800_000_005.0,
                    "pre_roll_s": 5.0, "key": "dev-a/2026/x.mp4", "sha256": "ab" * 32, "size": 10,
                    "rings": [1_800_000_005.0]},
    p.PrivacyCommand: {"command_id": "abcdef12", "enabled": True},
    p.SettingsCommand: {"command_id": "abcdef12", "motion": {"sensitivity": 0.5}, "clips": {"pre_roll_s": 3}},
    p.RpcCall: {"method": "audit", "params": {"limit": 5}},
    p.Result: {"ref": "abcdef12", "ok": True, "reason": "fine"},
}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=30)


def _decode_or_refuse(model: type[p.Message], payload: Any, kind: str | None) -> None:
    """The property: a message of ``model``, or ProtocolError with a non-empty reason."""
    try:
        msg = p.decode(model, payload, kind)
    except p.ProtocolError as exc:
        assert str(exc)
        return
    assert isinstance(msg, model)


def _nest(depth: int, opener: str, leaf: str) -> str:
    if opener == "[":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


@FUZZ
@given(depth=st.integers(1, 5000), opener=st.sampled_from(["[", "{"]), model=st.sampled_from(MODELS),
       kind=st.sampled_from(KINDS))
def test_any_nesting_depth_is_decoded_or_refused(depth: int, opener: str, model: type[p.Message],
                                                 kind: str | None) -> None:
    payload = _nest(depth, opener, "1")
    _decode_or_refuse(model, payload.encode(), kind)


@pytest.mark.parametrize("opener", ["[", "{"])
def test_nesting_past_the_limit_is_refused_with_the_reason(opener: str) -> None:
    """The agent's 4,000-byte case: under the size limit, far past the depth limit."""
    payload = _nest(2000, opener, "1").encode()[:4000] if opener == "[" else _nest(570, "{", "1").encode()
    assert len(payload) <= p.MAX_PAYLOAD["command"]
    with pytest.raises(p.ProtocolError, match="nests deeper than"):
        p.decode_command("settings", payload)
    ok = _nest(p.MAX_DEPTH, opener, "1")
    assert p.nesting_depth(ok.encode()) == p.MAX_DEPTH


@FUZZ
@given(value=json_values, brackets=st.text(alphabet="[]{}\"\\", max_size=60))
def test_depth_count_ignores_brackets_inside_strings(value: Any, brackets: str) -> None:
    """The depth scanner agrees with the parser's own structure; brackets in strings do not count."""
    doc = {"s": brackets, "v": value}
    raw = json.dumps(doc).encode()

    def depth(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        return 0

    assert p.nesting_depth(raw, limit=10_000) == depth(doc)


@FUZZ
@given(value=json_values, model=st.sampled_from(MODELS), kind=st.sampled_from(KINDS))
def test_any_json_document_is_decoded_or_refused(value: Any, model: type[p.Message], kind: str | None) -> None:
    _decode_or_refuse(model, json.dumps(value).encode(), kind)


@FUZZ
@given(data=st.data(), model=st.sampled_from(list(VALID)))
def test_type_confusion_in_any_field_is_refused(data: st.DataObject, model: type[p.Message]) -> None:
    """Replace one field of a valid message with any JSON value (or a huge number)."""
    body = dict(VALID[model])
    assert p.decode(model, json.dumps(body)) is not None  # the example itself is valid
    field = data.draw(st.sampled_from(sorted(body) + ["v", "unknown_field"]))
    body[field] = data.draw(json_values | st.integers(min_value=10**300, max_value=10**310))
    raw = json.dumps(body)
    if data.draw(st.booleans()):  # integers beyond Python's int-parsing limit (4,300 digits)
        raw = raw.replace('"v": 1', '"v": ' + "9" * data.draw(st.integers(4000, 6000)))
    _decode_or_refuse(model, raw.encode(), None)


@FUZZ
@given(raw=st.binary(max_size=300) | st.binary(min_size=4090, max_size=4200), model=st.sampled_from(MODELS),
       kind=st.sampled_from(KINDS))
def test_arbitrary_bytes_are_decoded_or_refused(raw: bytes, model: type[p.Message], kind: str | None) -> None:
    _decode_or_refuse(model, raw, kind)


@FUZZ
@given(model=st.sampled_from(list(VALID)), encoding=st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig"]),
       extra=st.text(max_size=20))
def test_other_encodings_and_broken_text_are_refused_or_read(model: type[p.Message], encoding: str,
                                                             extra: str) -> None:
    body = dict(VALID[model])
    text = json.dumps(body, ensure_ascii=False)[:-1] + f', "x": {json.dumps(extra, ensure_ascii=False)}}}'
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    _decode_or_refuse(model, raw, None)
    _decode_or_refuse(model, text[:-1] + "\ud800}", None)  # lone surrogate in a str payload


@FUZZ
@given(payload=st.none() | st.integers() | st.floats() | st.lists(st.integers(), max_size=3)
       | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
       model=st.sampled_from(MODELS))
def test_non_bytes_payloads_are_refused(payload: Any, model: type[p.Message]) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode(model, payload)
    with pytest.raises(p.ProtocolError):
        p.decode_status(payload)
    with pytest.raises(p.ProtocolError):
        p.decode_snapshot(payload)


@FUZZ
@given(size=st.integers(0, 3) | st.integers(p.MAX_PAYLOAD["command"] - 8, p.MAX_PAYLOAD["command"] + 8),
       name=st.sampled_from([*p.COMMAND_NAMES, "reboot", ""]))
def test_size_limit_holds_at_the_boundary(size: int, name: str) -> None:
    payload = b'{"command_id":"' + b"a" * max(0, size - 18) + b'"}'
    try:
        p.decode_command(name, payload)
    except p.ProtocolError as exc:
        if len(payload) > p.MAX_PAYLOAD["command"] and name in p.COMMAND_NAMES:
            assert "exceeds" in str(exc)
        return
    assert len(payload) <= p.MAX_PAYLOAD["command"] and name in p.COMMAND_NAMES


@FUZZ
@given(raw=st.binary(max_size=600) | st.sampled_from([b"online", b"offline", b"\xff\xd8\xff" + b"x" * 10])
       | st.integers(p.MAX_PAYLOAD["snapshot"] - 2, p.MAX_PAYLOAD["snapshot"] + 2).map(
           lambda n: b"\xff\xd8\xff" + b"\0" * (n - 3)))
def test_status_and_snapshot_decoders(raw: bytes) -> None:
    for decoder in (p.decode_status, p.decode_snapshot):
        try:
            out = decoder(raw)
        except p.ProtocolError as exc:
            assert str(exc)
            continue
        assert out in (p.STATUS_ONLINE, p.STATUS_OFFLINE) or (out[:3] == b"\xff\xd8\xff" and out == raw)


@FUZZ
@given(topic=st.text(max_size=200) | st.builds(
    lambda parts: "doorbell/v1/" + "/".join(parts),
    st.lists(st.sampled_from(["devices", "owners", "dev-a", "owner-a", "commands", "snapshot", "rpc", "reply",
                              "grants", "revoke", "+", "#", "", "\x00", "abcdef12", "x" * 70]), max_size=6)))
def test_parse_topic_parses_or_refuses(topic: str) -> None:
    try:
        t = p.parse_topic(topic)
    except p.ProtocolError as exc:
        assert str(exc)
        return
    assert t.kind in p.MAX_PAYLOAD and topic.startswith(p.PREFIX + "/")


@pytest.mark.parametrize("topic", [None, b"doorbell/v1/devices/dev-a/events", 7])
def test_parse_topic_refuses_non_text(topic: Any) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_topic(topic)
