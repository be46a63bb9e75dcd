"""``doorbell owner ...``: the command line around :class:`~doorbell.clients.owner.app.OwnerApp`.

argparse and output only: the app (:mod:`.app`) does the talking and signing,
:mod:`.render` turns results into text. Heavy imports (httpx) happen inside
the app's handlers.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from doorbell.clients.owner.app import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OwnerApp,
    OwnerError,
    load_owner_config,
)
from doorbell.clients.owner.render import (
    audit_line,
    confirm,
    describe_approval,
    describe_denial,
    describe_event,
    describe_request,
    describe_result,
    describe_revoke,
    fmt_duration,
    fmt_size,
    fmt_time,
    format_event,
    safe,
    table,
)
from doorbell.core import protocol as p


def register(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="FILE",
                        help=f"owner config (owner + mqtt sections); default ${CONFIG_ENV} or {DEFAULT_CONFIG}")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="seconds to wait for the broker/service (default 15)")
    p = subs.add_parser("owner", help="the owner's app: events, clips, police requests, consent, audit",
                        description="The owner's app over MQTT: see rings and clips, answer police "
                                    "requests with a signed yes/no, revoke grants, verify the audit log.")
    osub = p.add_subparsers(dest="owner_cmd", metavar="ACTION", required=True)

    keys = osub.add_parser("keys", help="your signing key and clip key").add_subparsers(dest="keys_cmd", required=True)
    k = keys.add_parser("init", parents=[common], help="create your signing key and your age (clip) identity "
                        "(0600) and print the public keys")
    k.add_argument("--force", action="store_true", help="replace an existing key (old approvals stay valid)")
    k.set_defaults(func=_cmd_keys_init)
    k = keys.add_parser("show", parents=[common], help="print your public key (for enrolment)")
    k.set_defaults(func=_cmd_keys_show)
    from doorbell.clients.owner import keys as age_keys
    age_keys.register(keys, common)

    e = osub.add_parser("events", parents=[common], help="rings and motion from your devices")
    e.add_argument("--follow", "-f", action="store_true", help="keep printing live events until Ctrl-C")
    e.add_argument("--seconds", type=float, default=3.0, metavar="S",
                   help="without --follow: listen this long, then exit (default 3)")
    e.add_argument("--device", action="append", default=[], metavar="ID", help="only this device (repeatable)")
    e.set_defaults(func=_cmd_events)

    c = osub.add_parser("clips", parents=[common], help="your recent clips; `clips fetch ID`, `clips open ID`")
    c.add_argument("action", nargs="?", choices=["list", "fetch", "open"], default="list")
    c.add_argument("clip_id", nargs="?", metavar="ID")
    c.add_argument("--limit", type=int, default=20, help="list: how many (default 20, max 500)")
    c.add_argument("--device", help="list: only this device")
    c.add_argument("--out", metavar="PATH", help="fetch: file or directory (default ./ID.mp4)")
    c.add_argument("--snapshot", action="store_true", help="fetch/open the snapshot JPEG instead of the video")
    c.set_defaults(func=_cmd_clips)

    r = osub.add_parser("requests", parents=[common], help="pending police requests for your footage")
    r.set_defaults(func=_cmd_requests)

    a = osub.add_parser("approve", parents=[common], help="share some clips with the requesting agency (signed)")
    a.add_argument("request_id", metavar="REQUEST")
    a.add_argument("--clip", action="append", default=[], metavar="ID",
                   help="share this clip (repeatable); default: every clip offered in the request")
    a.add_argument("--days", type=int, metavar="N", help="how long the agency may download (1-30; default: "
                                                         "the service's default, usually 7)")
    a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    a.set_defaults(func=_cmd_approve)

    d = osub.add_parser("deny", parents=[common], help="refuse a request (signed); nothing is shared")
    d.add_argument("request_id", metavar="REQUEST")
    d.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    d.set_defaults(func=_cmd_deny)

    g = osub.add_parser("grants", parents=[common], help="what you have shared, with whom, until when")
    g.add_argument("--all", action="store_true", help="include expired and revoked grants")
    g.set_defaults(func=_cmd_grants)

    v = osub.add_parser("revoke", parents=[common], help="end a grant now (signed)")
    v.add_argument("grant_id", metavar="GRANT")
    v.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    v.set_defaults(func=_cmd_revoke)

    u = osub.add_parser("audit", parents=[common], help="every access to your footage (hash-chained log)")
    u.add_argument("--verify", action="store_true", help="recompute the hash chain locally; non-zero if broken")
    u.add_argument("--limit", type=int, default=50, help="show the last N of your entries (default 50; 0 = all)")
    u.set_defaults(func=_cmd_audit)

    from doorbell.clients.owner import link, share, web

    web.register(osub, common)
    link.register(osub, common)
    share.register(osub, common)



def _run(args: argparse.Namespace, body: Callable[[OwnerApp, argparse.Namespace], int],
         connect: bool = True) -> int:
    """Load the config, connect, run ``body``; OwnerErrors become a message and an exit code."""
    from doorbell.core.config import ConfigError

    if not getattr(args, "verbose", False):  # request lines (with signed URLs) only with -v
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_owner_config(args.config)
        app = OwnerApp(cfg, connect_timeout=args.timeout)
        if not connect:
            return body(app, args)
        with app:
            return body(app, args)
    except OwnerError as exc:
        _err(str(exc), args)
        return exc.code
    except ConfigError as exc:
        _err(str(exc), args)
        return EXIT_USAGE


def _err(message: str, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": message}))
    print(f"doorbell owner: {message}", file=sys.stderr)


def _emit(args: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# ---- keys

def _cmd_keys_init(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        from doorbell.core.signing import generate_key, public_key_text, save_private_key

        path = Path(app.cfg.owner.key_file).expanduser()
        if path.exists() and not a.force:
            raise OwnerError(f"{path} already exists; `doorbell owner keys show` prints its public key "
                             "(--force replaces it, and the service must then be given the new key)", EXIT_USAGE)
        key = generate_key()
        try:
            save_private_key(key, path, overwrite=a.force)
        except OSError as exc:
            raise OwnerError(f"cannot write {path}: {exc}") from None
        pub = public_key_text(key)
        from doorbell.clients.owner import keys as age_keys
        try:
            ident, made = age_keys.ensure_identity(path)
        except age_keys.KeysError as exc:
            raise OwnerError(str(exc)) from None
        rfile = age_keys.recipients_path(path)
        if a.json:
            _emit(a, {"owner_id": app.owner_id, "key_file": str(path), "public_key": pub,
                      "identity_file": str(age_keys.identity_path(path)), "recipient": str(ident.recipient),
                      "recipients_file": str(rfile)})
        else:
            print(f"Signing key written to {path} (mode 0600; it never leaves this machine).")
            print(f"Public key for owner {app.owner_id}:")
            print(f"  {pub}")
            print("Give it to your sharing service operator, who enrols it with:")
            print(f"  doorbell sharing owner add {app.owner_id} --public-key {pub}")
            print(f"Clip key {'written to' if made else 'kept at'} {age_keys.identity_path(path)} (mode 0600): "
                  f"{ident.recipient}")
            print(f"  Your devices encrypt to the keys in {rfile}; keep a copy of the clip key: lose it and "
                  "every member's key and the footage is lost. `doorbell owner keys recovery` makes a backup.")
        return EXIT_OK
    return _run(args, body, connect=False)


def _cmd_keys_show(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        from doorbell.core.signing import public_key_text

        pub = public_key_text(app.key())
        if a.json:
            _emit(a, {"owner_id": app.owner_id, "public_key": pub})
        else:
            print(pub)
        return EXIT_OK
    return _run(args, body, connect=False)


# ---- events

def _cmd_events(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        app.watch(a.device)
        deadline = None if a.follow else time.monotonic() + max(0.0, a.seconds)
        if not a.json:
            print(f"Listening for your devices' events{' (Ctrl-C to stop)' if a.follow else ''}…", flush=True)
        seen: set[tuple[str, str]] = set()
        events: list[dict[str, Any]] = []
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
                msg = app.next_message(wait)
                if msg is None:
                    continue
                e = describe_event(msg.topic, msg.payload)
                if e is None:
                    continue
                key = (msg.topic, e.get("event_id") or e.get("status", ""))
                if key in seen:  # overlapping subscriptions may deliver twice
                    continue
                seen.add(key)
                e["retained"] = msg.retain
                if a.json:
                    if a.follow:
                        print(json.dumps(e, sort_keys=True), flush=True)
                    else:
                        events.append(e)
                else:
                    print(format_event(e), flush=True)
        except KeyboardInterrupt:
            pass
        if a.json and not a.follow:
            _emit(a, events)
        return EXIT_OK
    return _run(args, body)


# ---- clips

def _cmd_clips(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        if a.action == "list":
            if a.clip_id:
                raise OwnerError("`clips` takes no ID; use `clips fetch ID` or `clips open ID`", EXIT_USAGE)
            if not 1 <= a.limit <= 500:
                raise OwnerError("--limit must be between 1 and 500", EXIT_USAGE)
            rows = app.clips(limit=a.limit, device=a.device)
            if a.json:
                _emit(a, [r.model_dump(mode="json") for r in rows])
                return EXIT_OK
            if not rows:
                print("No clips yet.")
                return EXIT_OK
            table([[r.clip_id, r.device_id, r.trigger, fmt_time(r.started_at),
                    fmt_duration(r.ended_at - r.started_at), fmt_size(r.size),
                    "yes" if r.has_snapshot else "no"] for r in rows],
                  ["CLIP", "DEVICE", "TRIGGER", "STARTED", "LENGTH", "SIZE", "SNAPSHOT"], sys.stdout)
            print("Fetch one with: doorbell owner clips fetch CLIP (a short-lived link; checked by SHA-256)")
            return EXIT_OK
        if not a.clip_id:
            raise OwnerError(f"`clips {a.action}` needs a clip ID (see `doorbell owner clips`)", EXIT_USAGE)
        what = "snapshot" if a.snapshot else "video"
        ext = ".jpg" if a.snapshot else ".mp4"
        if a.action == "fetch":
            dest = Path(a.out or f"{a.clip_id}{ext}")
            if dest.is_dir():
                dest = dest / f"{a.clip_id}{ext}"
        else:
            cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "doorbell" / "clips"
            dest = cache / f"{a.clip_id}{ext}"
        fetched = app.fetch_clip(a.clip_id, dest, what)
        info: dict[str, object] = dict(asdict(fetched))
        opened = False
        if a.action == "open":
            opener = shutil.which("xdg-open") or shutil.which("open")
            opened = bool(opener and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                      or sys.platform == "darwin"))
            info["opened"] = opened
            if opener and opened:
                subprocess.Popen([opener, str(dest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        if a.json:
            _emit(a, info)
        else:
            check = "SHA-256 verified" if fetched.verified else "snapshot"
            print(f"✓ {dest} ({fmt_size(fetched.size)}, {check})")
            if a.action == "open" and not opened:
                print("  (no desktop to open it on; the file is saved above)")
        return EXIT_OK
    return _run(args, body)


# ---- requests

def _cmd_requests(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        reqs = app.pending_requests(a.timeout)
        _add_sealed_candidates(app, reqs)
        if a.json:
            _emit(a, reqs)
            return EXIT_OK
        if not reqs:
            print("No pending police requests.")
            return EXIT_OK
        for r in reqs:
            print(describe_request(r))
            print()
        return EXIT_OK
    return _run(args, body)


def _add_sealed_candidates(app: OwnerApp, reqs: list[dict[str, Any]]) -> None:
    """For requests that reach sealed devices, add the owner's own matching clips from its local index
    (synced first): the service knows none of them (sharing rule 9)."""
    sealed = [r for r in reqs if r.get("agency_recipient")]
    if not sealed:
        return
    with app.clip_index() as index:
        app.sync_clips(index)
        for r in sealed:
            known = {c["clip_id"] for c in r.get("clips") or []}
            r["clips"] = list(r.get("clips") or []) + [c for c in app.sealed_candidates(r, index)
                                                        if c["clip_id"] not in known]


def _report_result(a: argparse.Namespace, result: p.Result, what: str) -> int:
    if a.json:
        _emit(a, result.model_dump(mode="json", exclude_none=True))
    else:
        print(describe_result(result, what), file=sys.stdout if result.ok else sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_approve(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        import re

        from doorbell.core.protocol import CLIP_ID_PATTERN

        bad = [c for c in a.clip if not re.match(CLIP_ID_PATTERN, c)]
        if bad:
            raise OwnerError(f"not a clip id: {', '.join(bad)}", EXIT_USAGE)
        if a.days is not None and not 1 <= a.days <= 30:
            raise OwnerError("--days must be between 1 and 30", EXIT_USAGE)
        app.key()  # fail before asking if there is no key
        req = app.request(a.request_id, a.timeout)
        _add_sealed_candidates(app, [req])
        offered = [c["clip_id"] for c in req.get("clips") or []]
        chosen = sorted(set(a.clip)) if a.clip else sorted(offered)
        outside = [c for c in chosen if c not in offered]
        if outside:
            raise OwnerError(f"not offered in request {a.request_id}: {', '.join(outside)}", EXIT_USAGE)
        if not chosen:
            raise OwnerError("this request offers none of your clips; deny it instead", EXIT_USAGE)
        days = a.days if a.days is not None else max(1, min(30, int(round(req.get("grant_days") or 7))))
        out = sys.stderr if a.json else sys.stdout
        if not confirm(describe_approval(req, chosen, days), "Sign and send this approval?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        sealed = {c["clip_id"] for c in req.get("clips") or [] if c.get("sealed")}
        release = None
        if sealed & set(chosen):
            if not set(chosen) <= sealed:
                raise OwnerError("choose either end-to-end encrypted clips or clips stored in clear in one "
                                 "approval (--clip ...), not both", EXIT_USAGE)
            with app.clip_index() as index:
                release = app.release_for(req, chosen, index)
        result = app.decide(a.request_id, True, chosen, days, a.timeout, release=release)
        return _report_result(a, result, f"approved: {len(chosen)} clip(s) shared with {safe(req['agency'])}")
    return _run(args, body)


def _cmd_deny(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        app.key()
        req = app.request(a.request_id, a.timeout)
        text = describe_denial(req)
        out = sys.stderr if a.json else sys.stdout
        if not confirm(text, "Sign and send this denial?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = app.decide(a.request_id, False, timeout=a.timeout)
        return _report_result(a, result, "denied: nothing shared")
    return _run(args, body)


# ---- grants

def _cmd_grants(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        rows = app.grants(a.timeout)
        if not a.all:
            rows = [g for g in rows if g.state == "active"]
        if a.json:
            _emit(a, [g.model_dump(mode="json") for g in rows])
            return EXIT_OK
        if not rows:
            print("No active grants: nothing of yours is shared." if not a.all else "No grants yet.")
            return EXIT_OK
        table([[g.grant_id, g.state, g.agency, g.case_number, str(len(g.clip_ids)), fmt_time(g.expires_at)]
               for g in rows],
              ["GRANT", "STATE", "AGENCY", "CASE", "CLIPS", "UNTIL"], sys.stdout)
        return EXIT_OK
    return _run(args, body)


def _cmd_revoke(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        import re

        from doorbell.core.protocol import TOKEN_PATTERN

        if not re.match(TOKEN_PATTERN, a.grant_id):
            raise OwnerError(f"not a grant id: {a.grant_id!r}", EXIT_USAGE)
        app.key()
        grant = next((g for g in app.grants(a.timeout) if g.grant_id == a.grant_id), None)
        if grant is None:
            raise OwnerError(f"no grant {a.grant_id} (see `doorbell owner grants --all`)")
        if grant.state != "active":
            raise OwnerError(f"grant {a.grant_id} is already {grant.state}")
        text = describe_revoke(grant)
        out = sys.stderr if a.json else sys.stdout
        if not confirm(text, "Sign and send this revocation?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = app.revoke(a.grant_id, a.timeout)
        return _report_result(a, result, f"revoked: {safe(grant.agency)} can no longer download these clips")
    return _run(args, body)


# ---- audit

def _cmd_audit(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        view = app.audit(timeout=a.timeout)
        own = [r for r in view.rows if r.details is not None]
        shown = own[-a.limit:] if a.limit else own
        report = app.verify_audit(view) if a.verify else None
        if a.json:
            out: dict[str, Any] = {"entries": [{**r.model_dump(mode="json", exclude_none=True),
                                                "details": json.loads(r.details or "{}")} for r in shown],
                                   "total_rows": len(view.rows), "own_rows": len(own),
                                   "head": view.head.model_dump(mode="json")}
            if report is not None:
                out["verification"] = report.as_dict()
            _emit(a, out)
        else:
            if not own:
                print("No entries about you yet.")
            for r in shown:
                print(audit_line(r))
            if report is not None:
                if report.ok:
                    print(f"✓ audit chain verified: {report.checked} entries ({len(own)} about you), "
                          f"head #{report.head_seq} {report.head_hash[:16]}…")
                else:
                    print(f"✗ audit chain BROKEN at entry #{report.bad_seq}: {report.reason}", file=sys.stderr)
        return EXIT_OK if report is None or report.ok else EXIT_FAILED
    return _run(args, body)
