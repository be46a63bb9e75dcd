"""``doorbell owner link`` / ``linked`` / ``unlink``: more devices that can sign for you.

``link`` shows a one-time pairing code, waits for a browser (or another
device) to send its public keys MACed with that code (doorbell.core.linking),
shows the new key's fingerprint for you to compare with the browser's screen,
and signs its enrolment with this machine's key. ``linked`` lists the keys the
service holds for you; ``unlink KEY`` revokes one at once.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any, TextIO

from doorbell.clients.owner.app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OwnerApp, OwnerError
from doorbell.clients.owner.render import confirm, fmt_time, safe, table
from doorbell.core import linking
from doorbell.core import protocol as p
from doorbell.core.signing import public_key_text


def register(osub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    k = osub.add_parser("link", parents=[common], help="link a browser or another device (shows a pairing code)",
                        description="Show a one-time code; type it into the app's 'Linked devices' screen. "
                                    "This machine then signs the new device's key, after you compare fingerprints.")
    k.add_argument("--yes", "-y", action="store_true", help="link without asking (scripts; the fingerprint is "
                                                             "still printed)")
    k.add_argument("--app-url", metavar="URL",
                   help="the app's address (e.g. from `doorbell owner web`): also print a link and a QR code "
                        "that open the app with the code filled in")
    k.add_argument("--code", help=argparse.SUPPRESS)  # tests: a known code instead of a random one
    k.add_argument("--wait", type=float, default=float(linking.PAIR_WINDOW_S), metavar="S",
                   help=f"how long the code is valid (default {linking.PAIR_WINDOW_S} s)")
    k.set_defaults(func=_cmd_link)
    ls = osub.add_parser("linked", parents=[common], help="the keys that can sign for you")
    ls.set_defaults(func=_cmd_linked)
    u = osub.add_parser("unlink", parents=[common], help="revoke a linked device's key (signed)")
    u.add_argument("key_id", metavar="KEY")
    u.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    u.set_defaults(func=_cmd_unlink)


def pairing_link(app_url: str, code: str) -> str:
    """The app's address with the code in the fragment (a browser never sends a fragment to a server)."""

    if not app_url.startswith(("https://", "http://")):
        raise OwnerError("--app-url must be the app's http(s) address", EXIT_USAGE)
    return app_url.split("#", 1)[0] + "#/link/" + linking.format_code(code)


def print_qr(text: str, out: TextIO) -> None:
    """``text`` as a QR code drawn with block characters (segno), for a phone's camera."""
    import segno

    segno.make(text, error="m").terminal(out=out, compact=True)


def linked_keys(app: OwnerApp, timeout: float) -> list[dict[str, Any]]:
    """Retained KeyState messages (the service publishes one per linked key)."""
    msgs, _ = app.retained(f"{app.prefix}/keys/+", p.GrantsParams(limit=1), p.GrantList, timeout)
    out = []
    for m in msgs:
        try:
            out.append(p.decode(linking.KeyState, m.payload, "grant").model_dump(mode="json"))
        except p.ProtocolError:
            continue
    return sorted(out, key=lambda k: k["created_at"])


def _cmd_link(args: argparse.Namespace) -> int:
    from doorbell.clients.owner.cli import _emit, _run

    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        key = app.key()
        try:
            code = linking.normalise_code(a.code) if a.code else linking.new_code()
        except linking.LinkError as exc:
            raise OwnerError(str(exc), EXIT_USAGE) from None
        pair_id, mac_key = linking.pair_secrets(code, app.owner_id)
        topic = p.pair_topic(app.owner_id, pair_id)
        app.subscribe(topic)
        out = sys.stderr if a.json else sys.stdout
        print(f"Pairing code: {linking.format_code(code)}", file=out)
        print(f"In the app: Linked devices > Link this browser, owner {app.owner_id}. "
              f"Valid for {a.wait:g} s.", file=out, flush=True)
        if a.app_url:
            link = pairing_link(a.app_url, code)
            print(f"Or open: {link}", file=out)
            print_qr(link, out)
        print("Waiting for the device…", file=out, flush=True)
        deadline = time.monotonic() + a.wait
        offer = None
        while offer is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OwnerError("no device answered with this code in time; nothing was linked")
            try:
                msg = app.wait_for(topic, left, keep=lambda _m: None)
            except OwnerError:
                raise OwnerError("no device answered with this code in time; nothing was linked") from None
            try:
                cand = p.decode(linking.PairOffer, msg.payload, "pair")
                linking.check_offer(cand, mac_key)
                offer = cand
            except p.ProtocolError as exc:  # LinkError included: a wrong code or junk
                print(f"ignored an offer: {exc}", file=sys.stderr)
        kid = linking.key_id(offer.public_key)
        text = (f"A device asks to sign for you:\n  name:        {safe(offer.label)}\n"
                f"  fingerprint: {linking.fingerprint(kid)}\n"
                "Check that the app shows the same fingerprint. Once linked, it can approve, deny and revoke "
                "for you until you unlink it.")
        if not confirm(text, "Link this device?", a.yes, out, sys.stdin):
            print("Nothing was linked.", file=out)
            return EXIT_FAILED
        enrol = linking.sign_enrol(key, owner_id=app.owner_id, public_key=offer.public_key, x25519=offer.x25519,
                                   label=offer.label)
        result = app.send_signed(p.enrol_topic(app.owner_id, kid), enrol, a.timeout)
        data = {"ok": result.ok, "key_id": kid, "label": offer.label, "reason": result.reason,
                "signed_by": linking.key_id(public_key_text(key))}
        if a.json:
            _emit(a, data)
        elif result.ok:
            print(f"✓ linked {safe(offer.label)} ({linking.fingerprint(kid)})")
        else:
            print(f"✗ the sharing service refused: {result.reason}", file=sys.stderr)
        return EXIT_OK if result.ok else EXIT_FAILED
    return _run(args, body)


def _cmd_linked(args: argparse.Namespace) -> int:
    from doorbell.clients.owner.cli import _emit, _run


    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        keys = linked_keys(app, a.timeout)
        if a.json:
            _emit(a, keys)
        elif not keys:
            print("No linked devices: only the key the operator enrolled can sign for you.")
        else:
            table([[k["key_id"], k["state"], safe(k["label"]), fmt_time(k["created_at"])] for k in keys],
                  ["KEY", "STATE", "NAME", "LINKED"], sys.stdout)
        return EXIT_OK
    return _run(args, body)


def _cmd_unlink(args: argparse.Namespace) -> int:
    from doorbell.clients.owner.cli import _emit, _run


    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        if not re.match(p.KEY_ID_PATTERN, a.key_id):
            raise OwnerError(f"not a key id: {a.key_id!r} (see `doorbell owner linked`)", EXIT_USAGE)
        key = app.key()
        known = {k["key_id"]: k for k in linked_keys(app, a.timeout)}
        k = known.get(a.key_id)
        if k is None or k["state"] != "active":
            raise OwnerError(f"no active linked key {a.key_id} (see `doorbell owner linked`)")
        out = sys.stderr if a.json else sys.stdout
        text = (f"You are about to UNLINK {safe(k['label'])} ({linking.fingerprint(a.key_id)}): it can no longer "
                "approve, deny or revoke for you.")
        if not confirm(text, "Sign and send this unlink?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = app.send_signed(p.unlink_topic(app.owner_id, a.key_id),
                                 linking.sign_unlink(key, owner_id=app.owner_id, kid=a.key_id), a.timeout)
        if a.json:
            _emit(a, json.loads(result.model_dump_json()))
        elif result.ok:
            print(f"✓ unlinked {safe(k['label'])}")
        else:
            print(f"✗ the sharing service refused: {result.reason}", file=sys.stderr)
        return EXIT_OK if result.ok else EXIT_FAILED
    return _run(args, body)
