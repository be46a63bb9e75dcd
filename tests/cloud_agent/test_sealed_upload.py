"""Sealed clips (``encryption.enabled``) through the real agent into the real bucket and onto the real broker.

The bucket (read with admin credentials) and a subscriber on the device's
topics see ciphertext under opaque names and no clip id or time; the
household's keys open what they hold, with our decrypt and with ``age -d``.
"""
from __future__ import annotations

import base64
import hashlib
import io
import re
import secrets
import subprocess

from doorbell.core import age, protocol, signing
from doorbell.core import manifest as mf
from doorbell.core.spool import SEALED_FILES, Sealing
from tests.support.agent import wait_for
from tests.support.firmware import assert_opaque, decode_frames, record_clip


def test_sealed_clip_reaches_the_bucket_as_opaque_ciphertext(clean_broker, agent_config, start_agent, observer, s3,
                                                            tmp_path, sample_videos, mqtt_client):
    bikes = next(p for p in sample_videos if p.name == "bikes.mp4")
    alice, bob = age.generate_identity(), age.generate_identity()
    bob_file = tmp_path / "bob.txt"
    age.save_identity(bob, bob_file)
    device_key = signing.generate_key()
    fleet = f"sealed-{secrets.token_hex(4)}/"  # this test's own corner of the shared bucket
    cfg = agent_config("dev-a", s3={"prefix": fleet},
                       encryption={"enabled": True, "recipients": [str(alice.recipient), str(bob.recipient)]})
    obs = observer("dev-a")
    clip = record_clip(cfg.spool.dir, bikes, sealing=Sealing((alice.recipient, bob.recipient), device_key))
    plain = clip.clear  # the recorder's in-memory copy: what the cloud must not learn
    from cloud_agent.status import queue_depth
    q = queue_depth(cfg.spool.dir, cfg.agent.state_dir)
    assert q["clips"] == 1 and q["clip_bytes"] == clip.sealed.files["video"].size
    agent = start_agent(cfg)

    msg = obs.expect(protocol.clips_topic("dev-a"), wait=20)
    announced = protocol.decode(protocol.SealedClipMessage, msg.payload, "clips")
    payload = msg.payload.decode()
    assert clip.clip_id not in payload and clip.clip_id[:15] not in payload
    for t in (plain.started_at, plain.ended_at, plain.trigger_at, *plain.rings):
        assert str(int(t)) not in payload and str(int(t * 1000)) not in payload
    assert "ring" not in payload and "started" not in payload

    # the bucket, as its admin sees it: opaque names, ciphertext only, exactly the announced objects
    client = s3.client()
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=fleet).get("Contents", [])
    assert {o["Key"] for o in listed} == {o.key for o in announced.objects.values()}
    for kind, obj in announced.objects.items():
        assert re.fullmatch(re.escape(fleet) + r"dev-a/o/[0-9a-f]{32}/[vsmn]", obj.key), obj.key
        assert clip.clip_id not in obj.key
        body = client.get_object(Bucket=s3.bucket, Key=obj.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == obj.sha256 == clip.sealed.files[kind].sha256
        assert len(body) == obj.size
        assert body.startswith(b"age-encryption.org/v1\n")
        assert_opaque(body, what=kind)
        head = client.head_object(Bucket=s3.bucket, Key=obj.key)
        assert head["ContentType"] == "application/octet-stream"
        assert set(head["Metadata"]) == {"sha256"}  # nothing else about the clip rides along

    # the household opens it: alice with our decrypt, bob with the stock age CLI
    video_ct = client.get_object(Bucket=s3.bucket, Key=announced.objects["video"].key)["Body"].read()
    out = io.BytesIO()
    age.decrypt(io.BytesIO(video_ct), out, [alice])
    video = out.getvalue()
    assert_opaque(video_ct, video)
    r = subprocess.run(["age", "-d", "-i", str(bob_file)], input=video_ct, capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == video
    (tmp_path / "clip.mp4").write_bytes(video)
    assert len(decode_frames(tmp_path / "clip.mp4")) >= 100
    assert hashlib.sha256(video).hexdigest() == plain.sha256
    # the announcement's inline metadata is the metadata object, and opens for the household only
    inline = base64.b64decode(announced.metadata)
    assert hashlib.sha256(inline).hexdigest() == announced.objects["metadata"].sha256
    meta_out = io.BytesIO()
    age.decrypt(io.BytesIO(inline), meta_out, [bob])
    assert b'"started_at"' in meta_out.getvalue() and clip.clip_id.encode() in meta_out.getvalue()
    # the manifest object verifies against the device key and names the ciphertext the bucket holds
    man_ct = client.get_object(Bucket=s3.bucket, Key=announced.objects["manifest"].key)["Body"].read()
    man_out = io.BytesIO()
    age.decrypt(io.BytesIO(man_ct), man_out, [alice])
    manifest = mf.verify_manifest(mf.load_manifest(man_out.getvalue()), signing.public_key_text(device_key))
    assert manifest.files["video"].ciphertext_sha256 == announced.objects["video"].sha256

    wait_for(lambda: [c.clip_id for c in agent.spool.uploaded_clips()] == [clip.clip_id], what="mark_uploaded")
    wait_for(lambda: not agent.outbox.items(10), what="outbox drained")
    # no clear snapshot went out (ha_snapshot_plaintext defaults to off with encryption on): the agent's
    # publishes were acknowledged before its outbox drained, so a marker sent now arrives after them
    obs.pub("doorbell/v1/devices/dev-a/events-marker-test", b"x", qos=1)
    seen = []
    while True:
        m = obs.expect(None, wait=10)
        if m.topic.endswith("events-marker-test"):
            break
        seen.append(m.topic)
    assert protocol.snapshot_topic("dev-a") not in seen
    late = mqtt_client("admin")
    late.sub(protocol.snapshot_topic("dev-a"))
    late.sub("doorbell/v1/devices/dev-a/events-marker-test")
    late.pub("doorbell/v1/devices/dev-a/events-marker-test", b"y", qos=1)
    assert late.expect(None, wait=10).topic.endswith("events-marker-test")  # no retained snapshot first
    # the spool keeps only ciphertext and the clear index
    uploaded = agent.spool.get_clip(clip.clip_id)
    assert sorted(p.name for p in uploaded.path.iterdir()) == sorted([*SEALED_FILES.values(), "meta.json"])


def test_a_sealed_file_altered_in_the_spool_is_quarantined_not_uploaded(agent_config, start_agent, s3,
                                                                        sample_videos):
    """The agent checks each age file against the ciphertext SHA-256 the firmware recorded, as for clear clips."""
    bikes = next(p for p in sample_videos if p.name == "bikes.mp4")
    owner = age.generate_identity()
    fleet = f"sealed-{secrets.token_hex(4)}/"
    cfg = agent_config("dev-a", s3={"prefix": fleet},
                       encryption={"enabled": True, "recipients": [str(owner.recipient)]})
    clip = record_clip(cfg.spool.dir, bikes, sealing=Sealing((owner.recipient,), signing.generate_key()), frames=120)
    data = bytearray(clip.video.read_bytes())
    data[len(data) // 2] ^= 0x40
    clip.video.write_bytes(bytes(data))
    agent = start_agent(cfg)
    wait_for(lambda: any(p.name.startswith(clip.clip_id) for p in agent.spool.dir("quarantine").iterdir()),
             what="quarantined")
    assert agent.spool.pending_clips() == [] and agent.spool.uploaded_clips() == []
    assert s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=fleet).get("KeyCount") == 0
    err = agent.board.snapshot()["last_error"]
    assert err["where"] == "upload" and clip.clip_id in err["message"] and "sha256" in err["message"]
