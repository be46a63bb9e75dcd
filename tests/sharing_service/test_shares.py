"""Share links on the service, by attack: a ShareCreate is applied only when signed by the owner's key,
with headers that hash to what was signed, naming one sealed clip of one of that owner's own sealing
devices; a replay, another owner's objects and a non-sealing device are refused, and an unknown token
is a 404 like a revoked one (real Mosquitto, real service)."""
from __future__ import annotations

import base64
import io
import secrets
from typing import Any

import httpx

from doorbell.core import age
from doorbell.core import protocol as p
from doorbell.core.release import SealedSource, release_object
from doorbell.core.signing import generate_key, public_key_text, sign_share
from tests.support.sharing import Env


def sealed_objects(device: str, owner_identity: age.X25519Identity, share: age.X25519Identity,
                   ) -> tuple[dict[str, p.ReleasedObject], dict[str, str]]:
    """A sealed clip's video, snapshot and manifest headers (to the household), re-wrapped to ``share``."""
    base = f"{device}/o/{secrets.token_hex(16)}/"
    released, headers = {}, {}
    for kind, suffix in (("video", "v"), ("snapshot", "s"), ("manifest", "n")):
        out = io.BytesIO()
        age.encrypt(io.BytesIO(secrets.token_bytes(100)), out, [owner_identity.recipient])
        header, _ = age.header_and_payload_offset(io.BytesIO(out.getvalue()))
        released[kind], new = release_object(SealedSource(base + suffix, header), [owner_identity], share.recipient)
        headers[kind] = base64.b64encode(new).decode()
    return released, headers


def send(conn: Any, msg: p.ShareCreate) -> p.Result:
    conn.pub(p.share_create_topic(msg.owner_id, msg.share_id), msg.to_json(), qos=1)
    return p.decode(p.Result, conn.expect(p.result_topic(msg.owner_id, msg.nonce), wait=10).payload, "result")


def test_share_create_is_checked_like_a_release(sharing: Env) -> None:
    sharing.core.registry.set_device_key("dev-a", public_key_text(generate_key()))
    household, link = age.generate_identity(), age.generate_identity()
    conn = sharing.mqtt("owner-a")
    conn.sub(f"{p.PREFIX}/owners/owner-a/#", qos=1)
    key = sharing.keys["owner-a"]

    def share(device: str = "dev-a", tamper: str | None = None, signer: Any = key) -> p.ShareCreate:
        released, headers = sealed_objects(device, household, link)
        if tamper:  # a header swapped in from another object
            headers[tamper] = headers["snapshot" if tamper == "video" else "video"]
        return sign_share(signer, owner_id="owner-a", share_id=p.new_token(), clip_id="20261130T101010123Z-abcdef",
                          days=3, share_recipient=str(link.recipient), released=released, headers=headers)

    good = share()
    res = send(conn, good)
    assert res.ok and res.token and res.share_id == good.share_id, res
    replay = send(conn, good)  # the first verdict again, applied once; the token is never handed out twice
    assert "replayed" in (replay.reason or "") and replay.token is None and replay.share_id == good.share_id
    swapped = send(conn, share(tamper="video"))
    assert not swapped.ok and "not the one the owner signed" in (swapped.reason or "")
    theirs = send(conn, share(device="dev-b"))  # owner-b's device
    assert not theirs.ok and "not one sealed clip of one of your devices" in (theirs.reason or "")
    forged = send(conn, share(signer=sharing.keys["owner-b"]))  # another owner's valid key
    assert not forged.ok and "signature" in (forged.reason or "")

    # a clear device (no device key) cannot have sealed shares
    sharing.core.registry.add_device("dev-c", "owner-a", 52.52, 13.405)
    clear = send(conn, share(device="dev-c"))
    assert not clear.ok and "not registered as sealing" in (clear.reason or "")

    # the token works (its copies are made on first use); a made-up one looks like a revoked one
    assert httpx.get(f"{sharing.service.url}/v1/shares/{'A' * 43}").status_code == 404
    from sharing_service.shares import Share, token_hash

    with sharing.core.db.read() as s:
        row = s.get(Share, good.share_id)
        assert row is not None and row.token_hash == token_hash(res.token) and row.owner_id == "owner-a"
        assert s.query(Share).count() == 1

    # one link's views are limited across every instance: a second service on the same database
    # (its own process state, as another instance has) shares the same bucket
    from dataclasses import replace

    import pytest

    from sharing_service.context import Refused
    from sharing_service.core import SharingCore
    from sharing_service.db import Database
    from sharing_service.shares import VIEW_RATE_PER_MIN

    ctx = sharing.core.ctx
    other_db = Database(ctx.db.url)
    try:
        other = SharingCore(replace(ctx, db=other_db))
        instances = [sharing.core.shares, other.shares]
        for i in range(VIEW_RATE_PER_MIN):
            assert "objects" in instances[i % 2].open(res.token)
        for inst in instances:
            with pytest.raises(Refused) as refused:
                inst.open(res.token)
            assert "too many requests for this link" in str(refused.value)
    finally:
        other_db.dispose()
