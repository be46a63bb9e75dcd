"""The owner's own clip index (rule 9): sealed announcements decrypted and matched on the owner's side."""
from __future__ import annotations

import base64
import io
import json
import time

from doorbell.clients.owner.sealed_index import SealedIndex
from doorbell.core import age, signing
from doorbell.core.spool import Sealing, Spool


def announce(spool: Spool, seal: Sealing, t: float, device: str = "dev-a", trigger: str = "ring") -> tuple[str, bytes]:
    st = spool.stage_clip(ts=t, sealing=seal)
    st.open_video().write(b"\x00\x00\x00\x18ftypisom" + bytes(5000))
    st.write_snapshot(b"\xff\xd8\xffjpeg")
    clip = st.publish(device_id=device, trigger=trigger, started_at=t, ended_at=t + 10, trigger_at=t + 4,
                      pre_roll_s=4.0, duration_s=10.0)
    msg = spool.get_clip(clip.clip_id).sealed_message("devices/", device)
    return clip.clip_id, msg.to_json()


def test_owner_indexes_and_matches_its_sealed_clips(tmp_spool, tmp_path):
    owner = age.generate_identity()
    seal = Sealing((owner.recipient,), signing.generate_key())
    t0 = time.time() - 86400
    ids = [announce(tmp_spool, seal, t0 + i * 3600) for i in range(6)]
    payload = ids[0][1]
    assert b"started_at" not in payload and str(int(t0)).encode() not in payload  # nothing in clear
    with SealedIndex(tmp_path / "idx.sqlite", [owner]) as idx:
        for cid, msg in ids:
            got = idx.ingest("dev-a", msg)
            assert got is not None and got.clip_id == cid
        assert idx.ingest("dev-a", ids[0][1]) is not None and idx.count() == 6  # QoS 1 redelivery: one row
        found = idx.match(t0 + 3600 - 5, t0 + 3 * 3600 + 1)
        assert [c.clip_id for c in found] == [ids[1][0], ids[2][0], ids[3][0]]
        assert found[0].objects["video"]["key"].startswith("devices/dev-a/o/")
        assert idx.match(t0 + 3600, t0 + 7200, devices=["dev-b"]) == []
    assert (tmp_path / "idx.sqlite").stat().st_mode & 0o077 == 0


def test_the_index_refuses_what_is_not_its_households(tmp_spool, tmp_path):
    owner, stranger = age.generate_identity(), age.generate_identity()
    t = time.time() - 3600
    _cid, ours = announce(tmp_spool, Sealing((owner.recipient,), signing.generate_key()), t)
    _cid2, theirs = announce(tmp_spool, Sealing((stranger.recipient,), signing.generate_key()), t + 1)
    with SealedIndex(tmp_path / "idx.sqlite", [owner]) as idx:
        assert idx.ingest("dev-a", theirs) is None                      # not encrypted to us
        assert idx.ingest("dev-b", ours) is None                        # on another device's topic
        doc = json.loads(ours)
        doc["device_id"] = "dev-b"                                      # claims dev-b, keys are dev-a's
        assert idx.ingest("dev-b", json.dumps(doc).encode()) is None
        doc = json.loads(ours)
        doc["metadata"] = base64.b64encode(b"not age").decode()
        assert idx.ingest("dev-a", json.dumps(doc).encode()) is None
        bogus = io.BytesIO()
        age.encrypt(io.BytesIO(b'{"hello": 1}'), bogus, [owner.recipient])  # opens, but is no clip metadata
        doc = json.loads(ours)
        doc["metadata"] = base64.b64encode(bogus.getvalue()).decode()
        assert idx.ingest("dev-a", json.dumps(doc).encode()) is None
        assert idx.ingest("dev-a", b"{not json") is None
        assert idx.count() == 0
        assert idx.ingest("dev-a", ours) is not None and idx.count() == 1
