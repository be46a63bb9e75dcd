"""Clip in the spool -> verified object in the real bucket -> ``clips`` message on the real broker."""
from __future__ import annotations

import hashlib
import json

from doorbell.core import protocol
from doorbell.core.protocol import ClipMessage
from doorbell.sandbox.media import publish_clip
from tests.support.agent import wait_for


def test_clip_reaches_bucket_then_clips_message(agent_config, start_agent, observer, s3):
    cfg = agent_config("dev-a")
    obs = observer("dev-a")
    agent = start_agent(cfg)
    clip = publish_clip(agent.spool, "dev-a")

    msg = obs.expect(protocol.clips_topic("dev-a"), wait=15)
    announced = protocol.decode(ClipMessage, msg.payload, "clips")
    assert msg.qos == 1
    assert announced.clip_id == clip.clip_id and announced.sha256 == clip.meta.sha256
    assert announced.size == clip.meta.size

    client = s3.client()
    obj = client.get_object(Bucket=s3.bucket, Key=announced.key)
    body = obj["Body"].read()
    assert hashlib.sha256(body).hexdigest() == clip.meta.sha256
    assert obj["Metadata"]["sha256"] == clip.meta.sha256
    assert obj["ContentType"] == "video/mp4"
    # key layout: {prefix}{device}/{YYYY}/{MM}/{DD}/{clip_id}.mp4
    assert announced.key.startswith("dev-a/") and announced.key.endswith(f"/{clip.clip_id}.mp4")
    assert announced.snapshot_key == announced.key[:-4] + ".jpg"
    snap = client.get_object(Bucket=s3.bucket, Key=announced.snapshot_key)["Body"].read()
    assert snap[:3] == b"\xff\xd8\xff"
    meta = json.loads(client.get_object(Bucket=s3.bucket, Key=announced.key[:-4] + ".json")["Body"].read())
    assert meta["clip_id"] == clip.clip_id and meta["sha256"] == clip.meta.sha256

    # the bucket confirmed it, so the clip moved to uploaded/ (nothing deleted)
    wait_for(lambda: [c.clip_id for c in agent.spool.uploaded_clips()] == [clip.clip_id], what="mark_uploaded")
    assert agent.spool.pending_clips() == []
    # the clip's snapshot becomes the retained snapshot
    snapmsg = obs.expect(protocol.snapshot_topic("dev-a"), wait=10)
    assert snapmsg.retain is False or snapmsg.payload == snap  # live delivery clears the retain flag
    assert snapmsg.payload == snap


def test_device_scoped_s3_credentials_are_enough(agent_config, start_agent, observer, s3):
    """The agent works with the least-privilege identity `doorbell provision device` grants."""
    import secrets

    from botocore.exceptions import ClientError

    from doorbell.ops.provision import seaweedfs_device_actions

    ak, sk = "AKDEVA" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    s3.add_identity("dev-a-scoped", ak, sk, seaweedfs_device_actions(s3.bucket, "devices/dev-a/"))
    cfg = agent_config("dev-a", s3_identity=(ak, sk), s3={"prefix": "devices/"})  # fleet prefix, as provisioned
    obs = observer("dev-a")
    agent = start_agent(cfg)
    clip = publish_clip(agent.spool, "dev-a", seed=61)
    announced = protocol.decode(ClipMessage, obs.expect(protocol.clips_topic("dev-a"), wait=20).payload)
    assert announced.key.startswith("devices/dev-a/2") and announced.key.endswith(f"{clip.clip_id}.mp4")
    head = s3.client().head_object(Bucket=s3.bucket, Key=announced.key)
    assert head["Metadata"]["sha256"] == clip.meta.sha256
    scoped = s3.client(ak, sk)
    try:
        scoped.put_object(Bucket=s3.bucket, Key="devices/dev-b/intruder.mp4", Body=b"x")
        raise AssertionError("a device wrote under another device's prefix")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied"
