"""A small client for the agency HTTP API (httpx only; used by ``doorbell agency`` and the tests).

    with AgencyClient("https://sharing.example", api_key) as api:
        req = api.create_request(case_number=..., legal_basis=..., attest_not_protest=True,
                                 window_start=dt0, window_end=dt1, lat=..., lon=..., radius_m=300,
                                 reason=...)
        api.status(req["id"])            # {"status": "pending", "clips_shared": 0, ...}
        for clip in api.clips(req["id"])["clips"]:
            data = api.fetch(clip["url"])  # bytes straight from the S3 server (presigned link)
        for clip in api.clips(req["id"])["sealed"]:   # end-to-end encrypted clips: keys released to us
            files = api.download_sealed(clip, out_dir, load_identities(agency_key_file))

Every non-2xx answer raises :class:`ApiError` with the service's machine-readable
``code`` (e.g. ``window_too_long``, ``radius_too_large``, ``attestation_required``,
``missing_field``, ``unauthorized``, ``rate_limited``, ``not_found``).
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from doorbell.core import age, release
from doorbell.core.errors import DoorbellError


class ApiError(DoorbellError):
    def __init__(self, status: int, code: str, message: str, body: Any = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


def _time(value: datetime | float | int | str) -> str:
    """RFC 3339 (UTC) for datetimes and UNIX times; strings pass through."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        raise ValueError("datetimes need a time zone")
    return value.isoformat()


class AgencyClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AgencyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- raw

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; raises ApiError for any non-2xx/3xx answer."""
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, err.get("code", "error"), err.get("message", ""), r.json())
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", r.text[:500]) from None
        return r

    # -------------------------------------------------------------- API

    def create_request(self, *, case_number: str, legal_basis: str, attest_not_protest: bool,
                       window_start: datetime | float | str, window_end: datetime | float | str,
                       lat: float, lon: float, radius_m: float, reason: str) -> dict[str, Any]:
        """POST /v1/requests -> ``{"id", "status", "created_at", "expires_at"}``."""
        body = {"case_number": case_number, "legal_basis": legal_basis, "attest_not_protest": attest_not_protest,
                "window_start": _time(window_start), "window_end": _time(window_end),
                "lat": lat, "lon": lon, "radius_m": radius_m, "reason": reason}
        return _object(self.call("POST", "/v1/requests", json=body))

    def create_request_raw(self, body: dict[str, Any]) -> dict[str, Any]:
        return _object(self.call("POST", "/v1/requests", json=body))

    def requests(self) -> list[dict[str, Any]]:
        """GET /v1/requests: this agency's requests, newest first."""
        rows = _object(self.call("GET", "/v1/requests")).get("requests")
        if not isinstance(rows, list):
            raise ApiError(200, "unexpected", "the service's request list is not a list")
        return rows

    def status(self, request_id: str) -> dict[str, Any]:
        """GET /v1/requests/{id}: ``status`` pending/closed, ``expires_at``, ``clips_shared``."""
        return _object(self.call("GET", f"/v1/requests/{request_id}"))

    def clips(self, request_id: str) -> dict[str, Any]:
        """GET /v1/requests/{id}/clips: shared clips with presigned ``url`` (valid minutes)."""
        return _object(self.call("GET", f"/v1/requests/{request_id}/clips"))

    def download_url(self, request_id: str, clip_id: str) -> str:
        """The presigned URL behind GET .../clips/{clip_id}/download (each call is audited)."""
        r = self.call("GET", f"/v1/requests/{request_id}/clips/{clip_id}/download", follow_redirects=False)
        if r.status_code != 302:
            raise ApiError(r.status_code, "unexpected", "expected a redirect")
        return r.headers["location"]

    def transparency(self) -> dict[str, Any]:
        """GET /v1/transparency (public)."""
        return _object(self.call("GET", "/v1/transparency"))

    # -------------------------------------------------------------- storage links

    @staticmethod
    def fetch(url: str, timeout: float = 60.0) -> bytes:
        """GET a presigned link (no API key is sent to the storage server)."""
        r = httpx.get(url, timeout=timeout)
        if r.status_code != 200:
            raise ApiError(r.status_code, "storage_refused", r.text[:300])
        return r.content

    def download(self, request_id: str, clip: dict[str, Any], dest: Path) -> Path:
        """Fetch one listed clip to ``dest`` and check its SHA-256 against the index."""
        data = self.fetch(self.download_url(request_id, clip["clip_id"]))
        if hashlib.sha256(data).hexdigest() != clip["sha256"]:
            raise ApiError(200, "checksum_mismatch", f"clip {clip['clip_id']} does not match its sha256")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest


    @staticmethod
    def fetch_from(url: str, offset: int, dest: Path, timeout: float = 60.0) -> None:
        """Stream a presigned object from byte ``offset`` on (HTTP Range) into ``dest``."""
        with httpx.stream("GET", url, headers={"Range": f"bytes={int(offset)}-"}, timeout=timeout) as r:
            if r.status_code != 206:
                raise ApiError(r.status_code, "storage_refused", r.read().decode(errors="replace")[:300])
            with dest.open("wb") as fh:
                for chunk in r.iter_bytes(1 << 16):
                    fh.write(chunk)

    def download_sealed(self, clip: dict[str, Any], out: Path, identities: Sequence[age.X25519Identity],
                        device_key: str | None = None) -> dict[str, Path]:
        """Open one sealed clip the owner released to us and check it; returns the plaintext files.

        Each object: the owner's header (checked against its signed SHA-256)
        before the payload fetched from its offset; decrypted with our identity.
        Then the decrypted manifest must verify under the device's registered
        key, and the video and snapshot must match it. Nothing is kept on failure.
        """
        cid = str(clip["clip_id"])
        key = device_key or clip.get("device_key") or ""
        if not key:
            raise ApiError(200, "no_device_key", f"clip {cid}: the service gave no registered device key")
        out.mkdir(parents=True, exist_ok=True)
        names = {"video": f"{cid}.mp4", "snapshot": f"{cid}.jpg", "manifest": f"{cid}.manifest.json"}
        files: dict[str, Path] = {}
        try:
            for kind, obj in clip["objects"].items():
                if kind not in names:
                    continue
                header = base64.b64decode(obj["header"], validate=True)
                payload = out / f".{cid}.{kind}.payload"
                try:
                    self.fetch_from(obj["url"], int(obj["payload_offset"]), payload)
                    with payload.open("rb") as fh:
                        release.open_released(header, fh, out / names[kind], identities, obj["header_sha256"])
                finally:
                    payload.unlink(missing_ok=True)
                files[kind] = out / names[kind]
            if "manifest" not in files or "video" not in files:
                raise ApiError(200, "incomplete", f"clip {cid}: no video or manifest was released")
            m = release.verify_released({k: v for k, v in files.items() if k != "manifest"}, files["manifest"], key)
            if m.clip_id != cid:
                raise release.ReleaseError(f"the manifest is clip {m.clip_id}'s, not {cid}'s")
        except BaseException:
            for f in files.values():
                f.unlink(missing_ok=True)
            raise
        return files


def _object(r: httpx.Response) -> dict[str, Any]:
    """The response's JSON object; ApiError if the body is not one."""
    try:
        data = r.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ApiError(r.status_code, "unexpected", "the service did not answer with a JSON object")
    return data
