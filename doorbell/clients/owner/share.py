"""``doorbell owner share CLIP`` / ``shares`` / ``unshare SHARE``: a clip for anyone, by link.

For a sealed clip (its device encrypts) this app makes a fresh age identity for
this one share, re-wraps the clip's video, snapshot and manifest headers to it
(:func:`doorbell.core.release.release_object`, as for an agency) and signs a
:class:`~doorbell.core.protocol.ShareCreate`. The service answers with a token;
the link is ``{owner.sharing_url}/app/share.html#t=TOKEN&k=IDENTITY``. The
identity is printed once and kept nowhere: the part after ``#`` is never sent
to any server by a browser. A clip stored in clear is shared without a key (the
service could see it anyway); see docs/sharing.md.
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
from typing import Any

from doorbell.clients.owner.app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OwnerApp, OwnerError
from doorbell.clients.owner.render import confirm, fmt_time, table
from doorbell.core import protocol as p


def register(osub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    s = osub.add_parser("share", parents=[common], help="share one clip with anyone by an expiring link (signed)",
                        description="Prints a link that plays the clip in any browser until it expires or you "
                                    "revoke it (`doorbell owner unshare`). Every view is in your audit log.")
    s.add_argument("clip_id", metavar="CLIP")
    s.add_argument("--days", type=int, default=7, metavar="N", help="how long the link works (1-30, default 7)")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    s.set_defaults(func=_cmd_share)
    ls = osub.add_parser("shares", parents=[common], help="your share links, their views and state")
    ls.add_argument("--all", action="store_true", help="include expired and revoked links")
    ls.set_defaults(func=_cmd_shares)
    u = osub.add_parser("unshare", parents=[common], help="revoke a share link now (signed)")
    u.add_argument("share_id", metavar="SHARE")
    u.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    u.set_defaults(func=_cmd_unshare)


def share_link(sharing_url: str, token: str, identity: str | None) -> str:
    """The viewer's address: the token, and for a sealed clip its key, in the fragment only."""
    base = sharing_url.rstrip("/") + "/app/share.html#t=" + token
    return base + ("&k=" + identity if identity else "")


def create_share(app: OwnerApp, clip_id: str, days: int, timeout: float = 15.0) -> dict[str, Any]:
    """Sign and send a share of one clip; returns ``{ok, share_id, link, expires_at, sealed, reason}``."""
    from doorbell.core import age
    from doorbell.core.release import RELEASED_KINDS, SealedSource, release_object
    from doorbell.core.signing import sign_share

    key = app.key()
    share_id = p.new_token()
    sealed = _sealed_clip(app, clip_id)
    identity = None
    if sealed is not None:
        identity = age.generate_identity()
        released, headers = {}, {}
        for kind, obj in sealed.objects.items():
            if kind not in RELEASED_KINDS:
                continue
            source = SealedSource(key=str(obj["key"]), header=app._object_header(str(obj["key"])))
            try:
                released[kind], header = release_object(source, app.identities(), identity.recipient)
            except age.AgeError as exc:
                raise OwnerError(f"cannot re-wrap the {kind} of clip {clip_id}: {exc}") from None
            headers[kind] = base64.b64encode(header).decode()
        msg = sign_share(key, owner_id=app.owner_id, share_id=share_id, clip_id=clip_id, days=days,
                         share_recipient=str(identity.recipient), released=released, headers=headers)
    else:
        try:
            app.clip_info(clip_id)  # a clear clip the service indexed
        except OwnerError:
            raise OwnerError(f"no clip {clip_id} among your clips: neither in your own index of encrypted clips "
                             "nor among your unencrypted ones (see `doorbell owner clips`)") from None
        msg = sign_share(key, owner_id=app.owner_id, share_id=share_id, clip_id=clip_id, days=days)
    result = app.send_signed(p.share_create_topic(app.owner_id, share_id), msg, timeout)
    out: dict[str, Any] = {"ok": result.ok, "share_id": share_id, "clip_id": clip_id, "sealed": sealed is not None,
                           "reason": result.reason, "expires_at": result.expires_at}
    if result.ok and result.token:
        out["link"] = share_link(app.cfg.owner.sharing_url, result.token, str(identity) if identity else None)
    return out


def _sealed_clip(app: OwnerApp, clip_id: str) -> Any:
    """The clip in this owner's own sealed-clip index (synced first), or None (no identity, or not sealed)."""
    from doorbell.clients.owner.keys import identity_path

    if not identity_path(app.cfg.owner.key_file.expanduser()).exists():
        return None
    with app.clip_index() as index:
        app.sync_clips(index, idle_s=0.3)
        return index.get(clip_id)


def list_shares(app: OwnerApp, timeout: float = 10.0) -> list[p.ShareInfo]:
    now = time.time()
    rows = app.call(p.SharesParams(limit=500), p.ShareList, timeout).shares
    return [r.model_copy(update={"state": "expired"}) if r.state == "active" and r.expires_at <= now else r
            for r in rows]


def revoke_share(app: OwnerApp, share_id: str, timeout: float = 15.0) -> p.Result:
    from doorbell.core.signing import sign_unshare

    msg = sign_unshare(app.key(), owner_id=app.owner_id, share_id=share_id)
    return app.send_signed(p.share_revoke_topic(app.owner_id, share_id), msg, timeout)


def _cmd_share(args: argparse.Namespace) -> int:
    from doorbell.clients.owner.cli import _emit, _run

    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        if not re.match(p.CLIP_ID_PATTERN, a.clip_id):
            raise OwnerError(f"not a clip id: {a.clip_id!r} (see `doorbell owner clips`)", EXIT_USAGE)
        if not 1 <= a.days <= 30:
            raise OwnerError("--days must be between 1 and 30", EXIT_USAGE)
        out = sys.stderr if a.json else sys.stdout
        text = (f"You are about to SHARE clip {a.clip_id} with ANYONE who gets the link, for {a.days} day(s).\n"
                "Whoever has the link can watch and save the clip; a saved copy cannot be recalled. You can revoke "
                "the link at any time (`doorbell owner unshare`), and every view is in your audit log.")
        if not confirm(text, "Sign and make this link?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        res = create_share(app, a.clip_id, a.days, a.timeout)
        if a.json:
            _emit(a, res)
        elif res["ok"]:
            print(f"✓ share {res['share_id']} until {fmt_time(res['expires_at'])}")
            print(f"Link (shown once; the key after '#' is kept nowhere else): {res['link']}")
            if not res["sealed"]:
                print("  This clip is stored in clear: the link's token is its only protection.")
        else:
            print(f"✗ the sharing service refused: {res['reason']}", file=sys.stderr)
        return EXIT_OK if res["ok"] else EXIT_FAILED
    return _run(args, body)


def _cmd_shares(args: argparse.Namespace) -> int:
    from doorbell.clients.owner.cli import _emit, _run

    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        rows = [r for r in list_shares(app, a.timeout) if a.all or r.state == "active"]
        if a.json:
            _emit(a, [json.loads(r.model_dump_json()) for r in rows])
        elif not rows:
            print("No active share links." if not a.all else "No share links yet.")
        else:
            table([[r.share_id, r.state, r.clip_id, "yes" if r.sealed else "no", str(r.views),
                    fmt_time(r.expires_at)] for r in rows],
                  ["SHARE", "STATE", "CLIP", "ENCRYPTED", "VIEWS", "UNTIL"], sys.stdout)
        return EXIT_OK
    return _run(args, body)


def _cmd_unshare(args: argparse.Namespace) -> int:
    from doorbell.clients.owner.cli import _emit, _run

    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        if not re.match(p.TOKEN_PATTERN, a.share_id):
            raise OwnerError(f"not a share id: {a.share_id!r} (see `doorbell owner shares`)", EXIT_USAGE)
        app.key()
        sh = next((r for r in list_shares(app, a.timeout) if r.share_id == a.share_id), None)
        if sh is None or sh.state != "active":
            raise OwnerError(f"no active share link {a.share_id} (see `doorbell owner shares --all`)")
        out = sys.stderr if a.json else sys.stdout
        text = (f"You are about to REVOKE share link {a.share_id} (clip {sh.clip_id}, viewed {sh.views} time(s)): "
                "the link stops working at once. Copies someone already saved are not erased by this.")
        if not confirm(text, "Sign and send this revocation?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = revoke_share(app, a.share_id, a.timeout)
        if a.json:
            _emit(a, json.loads(result.model_dump_json()))
        elif result.ok:
            print(f"✓ revoked share link {a.share_id}")
        else:
            print(f"✗ the sharing service refused: {result.reason}", file=sys.stderr)
        return EXIT_OK if result.ok else EXIT_FAILED
    return _run(args, body)
