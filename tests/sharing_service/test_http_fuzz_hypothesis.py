"""Hypothesis-driven hostile HTTP against the real sharing service (uvicorn on loopback).

Complements test_fuzz.py (schemathesis, inputs derived from the spec) with what
a spec does not describe: JSON nested thousands deep, huge numbers, bodies in
other encodings or not JSON at all, odd content types, hostile path segments
and headers, on every route. The property: never a 5xx, always the documented
``{"error": {"code", "message"}}`` body on a 4xx, and the service stays up.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharing_service.service import SharingService
from tests.support.sharing import service_config

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))

ROUTES = [
    ("POST", "/v1/requests"),
    ("GET", "/v1/requests"),
    ("GET", "/v1/requests/{id}"),
    ("GET", "/v1/requests/{id}/clips"),
    ("GET", "/v1/requests/{id}/clips/{clip}/download"),
    ("GET", "/v1/transparency"),
    ("GET", "/healthz"),
]
VALID_BODY = {"case_number": "C-1", "legal_basis": "warrant 7", "attest_not_protest": True,
              "window_start": "2026-11-30T10:00:00Z", "window_end": "2026-11-30T11:00:00Z",
              "lat": 51.5, "lon": -0.12, "radius_m": 300, "reason": "burglary"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, broker: Any, s3: Any) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("httpfuzz")
    svc = SharingService(service_config(tmp, broker, s3), sweep_interval_s=3600)
    svc.start()
    _, key = svc.core.registry.add_agency("Hypothesis PD", rate_per_min=1_000_000)
    try:
        with httpx.Client(base_url=svc.url, timeout=30, follow_redirects=False) as http:
            yield {"http": http, "key": key}
    finally:
        svc.stop()


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "dict":
        return '{"a":' * depth + "1" + "}" * depth
    return json.dumps({**VALID_BODY, "reason": None})[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    kind = draw(st.sampled_from(["nested", "json", "confused", "bytes", "encoded", "bignum", "empty"]))
    ctype: str | None = draw(st.sampled_from(["application/json", "application/json; charset=utf-16",
                                              "text/plain", "application/x-www-form-urlencoded", None]))
    if kind == "nested":
        depth = draw(st.integers(1, 100_000))
        return _nested(depth, draw(st.sampled_from(["list", "dict", "field"]))).encode(), ctype
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), ctype
    if kind == "confused":
        body = dict(VALID_BODY)
        body[draw(st.sampled_from(sorted(body)))] = draw(json_values)
        return json.dumps(body).encode(), ctype
    if kind == "bytes":
        return draw(st.binary(max_size=2000)), ctype
    if kind == "encoded":
        enc = draw(st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "latin-1"]))
        return json.dumps({**VALID_BODY, "reason": "caf\u00e9"}, ensure_ascii=False).encode(enc), ctype
    if kind == "bignum":
        digits = draw(st.integers(10, 20_000))
        return json.dumps(VALID_BODY).replace('"radius_m": 300', '"radius_m": ' + "9" * digits).encode(), ctype
    return b"", ctype


segments = (st.text(max_size=80) | st.sampled_from(["..", "%2e%2e", "%00", "a" * 5000, "%ff%fe", "'; DROP TABLE x;--"]))


tokens = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200)


def _check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    if 400 <= resp.status_code < 500:
        err = resp.json()["error"]
        assert err["code"] and isinstance(err["message"], str)


@FUZZ
@given(route=st.sampled_from(ROUTES), body=bodies(), rid=segments, clip=segments,
       auth=st.sampled_from(["valid", "none", "garbage", "basic"]), garbage=tokens)
def test_every_route_survives_hostile_requests(service: dict[str, Any], route: tuple[str, str],
                                               body: tuple[bytes, str | None], rid: str, clip: str, auth: str,
                                               garbage: str) -> None:
    http: httpx.Client = service["http"]
    method, template = route
    path = template.replace("{id}", quote(rid, safe="%") or "x").replace("{clip}", quote(clip, safe="%") or "x")
    headers: dict[str, str] = {}
    if auth == "valid":
        headers["Authorization"] = f"Bearer {service['key']}"
    elif auth == "garbage":
        headers["Authorization"] = "Bearer " + garbage
    elif auth == "basic":
        headers["Authorization"] = "Basic dXNlcjpwYXNz"
    content, ctype = body
    if ctype:
        headers["Content-Type"] = ctype
    for m in {method, "POST" if method == "GET" else "GET"}:  # the other method must be refused cleanly too
        _check(http.request(m, path, content=content if m == "POST" else None, headers=headers))


@pytest.mark.parametrize("depth", [1_000, 10_000, 200_000])
def test_deeply_nested_request_body_is_a_400_not_a_crash(service: dict[str, Any], depth: int) -> None:
    """The agency API's version of finding 5: nesting that used to raise RecursionError in the JSON parser."""
    http: httpx.Client = service["http"]
    auth = {"Authorization": f"Bearer {service['key']}", "Content-Type": "application/json"}
    for kind in ("list", "dict", "field"):
        resp = http.post("/v1/requests", content=_nested(depth, kind).encode(), headers=auth)
        _check(resp)
        assert resp.status_code in (400, 413, 422), resp.text[:200]
    assert http.get("/healthz").json()["status"] == "ok"
    ok = http.post("/v1/requests", json=VALID_BODY, headers={"Authorization": auth["Authorization"]})
    assert ok.status_code in (201, 422), ok.text[:300]  # 422 only for rule-3 time checks, never a crash
