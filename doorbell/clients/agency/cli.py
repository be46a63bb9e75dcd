"""``doorbell agency ...``: the agency's side of the sharing service, over HTTP.

An agency can ask, never take: it files a request (case, legal basis,
attestation, window <= 12 h, radius <= 800 m), watches its status, and
downloads whatever owners chose to share through short-lived links, each
checked against the clip's SHA-256 before it is written. Nothing here can
tell which homes were asked or who declined; the service does not say.

The API key comes from ``--api-key``, else ``$DOORBELL_AGENCY_API_KEY``, else
``api_key`` in the agency config file (``--config``, default
``~/.config/doorbell/agency.yaml``, which also holds ``sharing_url``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doorbell.core.errors import DoorbellError

DEFAULT_CONFIG = "~/.config/doorbell/agency.yaml"
DEFAULT_IDENTITY = "~/.config/doorbell/agency-key.txt"
IDENTITY_ENV = "DOORBELL_AGENCY_IDENTITY"
KEY_ENV = "DOORBELL_AGENCY_API_KEY"
URL_ENV = "DOORBELL_SHARING_URL"
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_REL = re.compile(r"^(?:now)?-(\d+(?:\.\d+)?)([smhd])$")


class AgencyCliError(DoorbellError):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def parse_time(text: str, now: float | None = None) -> datetime:
    """RFC 3339 / ISO 8601 (a time without a zone is local time), ``now``, or ``now-90m``/``now-2h``/``now-1d``."""
    t = time.time() if now is None else now
    s = text.strip()
    if s == "now":
        return datetime.fromtimestamp(t, UTC)
    m = _REL.match(s)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return datetime.fromtimestamp(t - float(m.group(1)) * unit, UTC)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise AgencyCliError(f"cannot read time {text!r}: use e.g. 2026-11-23T20:00:00+01:00, now, now-2h",
                             EXIT_USAGE) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time zone
    return dt


def fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts)).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def load_settings(args: argparse.Namespace, needs_key: bool = True) -> tuple[str, str | None]:
    """(sharing URL, API key) from flags, environment and the config file, in that order."""
    import yaml

    data: dict[str, Any] = {}
    path = Path(args.config or DEFAULT_CONFIG).expanduser()
    if args.config or path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise AgencyCliError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
        except yaml.YAMLError as exc:
            raise AgencyCliError(f"{path}: not valid YAML: {exc}", EXIT_USAGE) from None
        if not isinstance(loaded, dict):
            raise AgencyCliError(f"{path}: expected a mapping with sharing_url and api_key", EXIT_USAGE)
        unknown = set(loaded) - {"sharing_url", "api_key"}
        if unknown:
            raise AgencyCliError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                                 "(only sharing_url and api_key)", EXIT_USAGE)
        data = loaded
    url = args.url or os.environ.get(URL_ENV) or data.get("sharing_url") or DEFAULT_URL
    key = args.api_key or os.environ.get(KEY_ENV) or data.get("api_key")
    if not key and needs_key:
        raise AgencyCliError(f"no API key: pass --api-key, set ${KEY_ENV}, or put api_key in {path}", EXIT_USAGE)
    return str(url), (str(key) if key else None)


def register(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", metavar="URL",
                        help=f"sharing service (default ${URL_ENV}, the config, or {DEFAULT_URL})")
    common.add_argument("--api-key", metavar="KEY", help=f"agency API key (default ${KEY_ENV} or the config)")
    common.add_argument("--config", "-c", metavar="FILE", help=f"agency config YAML (default {DEFAULT_CONFIG})")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = subs.add_parser("agency", help="the agency client: file requests, download what owners shared",
                        description="Agencies can ask, never take: file a request, then download only the "
                                    "clips owners approved, through short-lived links.")
    asub = p.add_subparsers(dest="agency_cmd", metavar="ACTION", required=True)

    req = asub.add_parser("request", help="file or check a request").add_subparsers(dest="request_cmd", required=True)
    c = req.add_parser("create", parents=[common], help="ask owners in an area for footage from a time window")
    c.add_argument("--case", required=True, help="your case number")
    c.add_argument("--basis", required=True, help="legal basis (statute, warrant, ...)")
    c.add_argument("--attest-not-protest", action="store_true",
                   help="attest that this request does not target lawful protest (required)")
    c.add_argument("--start", required=True,
                   help="window start: ISO 8601 time (e.g. 2026-11-23T18:00+01:00), 'now', or 'now-2h'")
    c.add_argument("--end", required=True, help="window end (at most 12 h after the start)")
    c.add_argument("--lat", type=float, required=True, help="centre latitude")
    c.add_argument("--lon", type=float, required=True, help="centre longitude")
    c.add_argument("--radius", type=float, required=True, metavar="M", help="radius in metres (at most 800)")
    c.add_argument("--reason", required=True, help="why the footage is needed")
    c.set_defaults(func=_cmd_create)
    s = req.add_parser("status", parents=[common], help="status of one request")
    s.add_argument("request_id", metavar="ID")
    s.set_defaults(func=_cmd_status)
    ls = req.add_parser("list", parents=[common], help="your requests, newest first")
    ls.set_defaults(func=_cmd_list)

    cl = asub.add_parser("clips", parents=[common], help="clips shared under a request (short-lived links)")
    cl.add_argument("request_id", metavar="ID")
    cl.set_defaults(func=_cmd_clips)

    d = asub.add_parser("download", parents=[common], help="download every shared clip, SHA-256 verified")
    d.add_argument("request_id", metavar="ID")
    d.add_argument("--out", required=True, metavar="DIR", help="directory to write <clip_id>.mp4 files into")
    d.add_argument("--identity", "-i", metavar="FILE",
                   help=f"your age identity for end-to-end encrypted clips (default ${IDENTITY_ENV} or "
                        f"{DEFAULT_IDENTITY}, from `doorbell agency keys init`)")
    d.set_defaults(func=_cmd_download)

    keys = asub.add_parser("keys", help="your age key: owners release clip keys to it").add_subparsers(
        dest="keys_cmd", required=True)
    k = keys.add_parser("init", help="make your age identity (once); prints the recipient to register")
    k.add_argument("--identity", "-i", metavar="FILE", help=f"where to keep it (default {DEFAULT_IDENTITY})")
    k.set_defaults(func=_cmd_keys_init)

    t = asub.add_parser("transparency", parents=[common], help="the public per-agency figures")
    t.set_defaults(func=_cmd_transparency)


def _run(args: argparse.Namespace, body: Any, needs_key: bool = True) -> int:
    import httpx

    from doorbell.clients.agency.client import AgencyClient, ApiError

    if not getattr(args, "verbose", False):  # request lines (with signed URLs) only with -v
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        url, key = load_settings(args, needs_key)
        with AgencyClient(url, key if needs_key else None) as api:
            return int(body(api, args))
    except AgencyCliError as exc:
        _err(args, str(exc), None)
        return exc.code
    except ApiError as exc:
        _err(args, f"refused ({exc.code}): {exc.message}", exc.code)
        return EXIT_FAILED
    except httpx.HTTPError as exc:
        _err(args, f"cannot reach the sharing service: {exc}", "unreachable")
        return EXIT_FAILED


def _err(args: argparse.Namespace, message: str, code: str | None) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "code": code, "error": message}))
    print(f"doorbell agency: {message}", file=sys.stderr)


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _cmd_create(args: argparse.Namespace) -> int:
    def body(api: Any, a: argparse.Namespace) -> int:
        if not a.attest_not_protest:
            raise AgencyCliError("--attest-not-protest is required: requests may not target lawful protest",
                                 EXIT_USAGE)
        start, end = parse_time(a.start), parse_time(a.end)
        if end <= start:
            raise AgencyCliError("--end must be after --start", EXIT_USAGE)
        created = api.create_request(case_number=a.case, legal_basis=a.basis, attest_not_protest=True,
                                     window_start=start, window_end=end, lat=a.lat, lon=a.lon,
                                     radius_m=a.radius, reason=a.reason)
        if a.json:
            _emit(created)
        else:
            print(f"✓ request {created['id']} filed ({created['status']}); owners may answer until "
                  f"{fmt_ts(created['expires_at'])}")
            print(f"  check it: doorbell agency request status {created['id']}")
        return EXIT_OK
    return _run(args, body)


def _print_status(st: dict[str, Any]) -> None:
    print(f"request {st['id']}  case {st['case_number']}  {st['status']}")
    print(f"  window:       {fmt_ts(st['window_start'])} .. {fmt_ts(st['window_end'])}")
    print(f"  filed:        {fmt_ts(st['created_at'])}; open until {fmt_ts(st['expires_at'])}")
    print(f"  clips shared: {st['clips_shared']}")


def _cmd_status(args: argparse.Namespace) -> int:
    def body(api: Any, a: argparse.Namespace) -> int:
        st = api.status(a.request_id)
        _emit(st) if a.json else _print_status(st)
        return EXIT_OK
    return _run(args, body)


def _cmd_list(args: argparse.Namespace) -> int:
    def body(api: Any, a: argparse.Namespace) -> int:
        rows = api.requests()
        if a.json:
            _emit(rows)
        elif not rows:
            print("No requests filed yet.")
        else:
            for st in rows:
                _print_status(st)
        return EXIT_OK
    return _run(args, body)


def _cmd_clips(args: argparse.Namespace) -> int:
    def body(api: Any, a: argparse.Namespace) -> int:
        listing = api.clips(a.request_id)
        if a.json:
            _emit(listing)
            return EXIT_OK
        clips = listing["clips"]
        sealed = listing.get("sealed") or []
        if not clips and not sealed:
            print(f"No clips shared under request {a.request_id} (yet).")
            return EXIT_OK
        for c in sealed:
            print(f"{c['clip_id']}  end-to-end encrypted to your age key")
            print(f"  objects: {', '.join(sorted(c['objects']))}; signed by device key {c['device_key']}")
            print(f"  link valid until {fmt_ts(c['url_expires_at'])}; access until {fmt_ts(c['access_expires_at'])}")
        for c in clips:
            print(f"{c['clip_id']}  {c['trigger']}  {fmt_ts(c['started_at'])}  {c['size']} bytes")
            print(f"  sha256 {c['sha256']}")
            print(f"  link valid until {fmt_ts(c['url_expires_at'])}; access until {fmt_ts(c['access_expires_at'])}")
        print(f"Download them with: doorbell agency download {a.request_id} --out DIR")
        return EXIT_OK
    return _run(args, body)


def _cmd_download(args: argparse.Namespace) -> int:
    def body(api: Any, a: argparse.Namespace) -> int:
        out = Path(a.out).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AgencyCliError(f"cannot create {out}: {exc.strerror or exc}", EXIT_USAGE) from None
        results = download_all(api, a.request_id, out, on_result=None if a.json else _print_download,
                               identity_file=_identity_path(a))
        failed = sum(1 for r in results if not r["ok"])
        clips = results
        if a.json:
            _emit({"request_id": a.request_id, "clips": results, "failed": failed})
        elif not clips:
            print(f"No clips shared under request {a.request_id} (yet); nothing downloaded.")
        else:
            print(f"{len(clips) - failed} of {len(clips)} clip(s) written to {out}")
        return EXIT_FAILED if failed else EXIT_OK
    return _run(args, body)


def _print_download(r: dict[str, Any]) -> None:
    if r["ok"]:
        how = "decrypted; device signature and manifest verified" if r.get("sealed") else "verified"
        print(f"✓ {r['path']}  {r['size']} bytes  sha256 {r['sha256'][:16]}… {how}")
    else:
        print(f"✗ {r['clip_id']}: {r['error']}", file=sys.stderr)


def download_all(api: Any, request_id: str, out: Path, on_result: Any = None,
                 identity_file: Path | None = None) -> list[dict[str, Any]]:
    """Fetch every clip shared under ``request_id`` into ``out``: a fresh audited link per
    clip, the bytes checked against the clip's SHA-256 before ``<clip_id>.mp4`` appears.

    End-to-end encrypted clips (``sealed``) open with ``identity_file`` and must
    verify under their device's registered key and signed manifest."""
    from doorbell.clients.agency.client import ApiError
    from doorbell.core import age, release
    from doorbell.core.signing import SignatureError

    listing = api.clips(request_id)
    results = []
    sealed = listing.get("sealed") or []
    identities: list[age.X25519Identity] = []
    if sealed:
        path = identity_file or Path(DEFAULT_IDENTITY).expanduser()
        try:
            identities = age.load_identities(path)
        except (OSError, age.AgeError) as exc:
            raise AgencyCliError(f"{len(sealed)} clip(s) are end-to-end encrypted to your age key, but {path} "
                                 f"cannot be read ({exc}); pass --identity FILE", EXIT_USAGE) from None
    for c in sealed:
        try:
            files = api.download_sealed(c, Path(out), identities)
            video = files["video"]
            r = {"clip_id": c["clip_id"], "path": str(video), "size": video.stat().st_size,
                 "sha256": hashlib.sha256(video.read_bytes()).hexdigest(), "ok": True, "sealed": True,
                 "verified": "device signature and manifest"}
        except (ApiError, age.AgeError, release.ReleaseError, SignatureError, ValueError) as exc:
            r = {"clip_id": c["clip_id"], "ok": False, "sealed": True, "error": str(exc)}
        results.append(r)
        if on_result is not None:
            on_result(r)
    for c in listing["clips"]:
        dest = Path(out) / f"{c['clip_id']}.mp4"
        try:
            data = api.fetch(api.download_url(request_id, c["clip_id"]))
            digest = hashlib.sha256(data).hexdigest()
            if digest != c["sha256"]:
                raise ApiError(200, "checksum_mismatch", f"got sha256 {digest[:16]}…, expected {c['sha256'][:16]}…")
            tmp = dest.with_name(f".{dest.name}.part")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            r = {"clip_id": c["clip_id"], "path": str(dest), "size": len(data), "sha256": digest, "ok": True}
        except ApiError as exc:
            r = {"clip_id": c["clip_id"], "ok": False, "error": f"{exc.code}: {exc.message}"}
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results


def _identity_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "identity", None) or os.environ.get(IDENTITY_ENV) or DEFAULT_IDENTITY).expanduser()


def _cmd_keys_init(args: argparse.Namespace) -> int:
    """Make the agency's age identity; the recipient is what the operator registers."""
    from doorbell.core import age

    path = _identity_path(args)
    if path.exists():
        try:
            identity = age.load_identities(path)[0]
        except (OSError, age.AgeError, IndexError) as exc:
            print(f"doorbell agency: {path} exists but is unreadable: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{path} already exists; its recipient is:")
    else:
        identity = age.generate_identity()
        age.save_identity(identity, path)
        print(f"age identity written to {path} (mode 600). Keep it safe: it opens every clip owners share "
              "with you; `age -d -i` opens them too. Give the operator this recipient to register "
              "(`doorbell sharing agency add NAME --age-recipient ...`):")
    print(identity.recipient)
    return EXIT_OK


def _cmd_transparency(args: argparse.Namespace) -> int:
    def body(api: Any, a: argparse.Namespace) -> int:
        data = api.transparency()
        if a.json:
            _emit(data)
            return EXIT_OK
        print(f"Published through {data['published_through'] or '-'}; approvals and denials carry "
              f"noise ({data['method']}, epsilon {data['epsilon_per_figure']:g} per figure).")
        for r in data["rows"]:
            print(f"{r['month']}  {r['agency']}: {r['requests']} requests, ~{r['approvals']} approvals, "
                  f"~{r['denials']} denials, {r['clips_shared']} clips shared")
        return EXIT_OK
    return _run(args, body, needs_key=False)
