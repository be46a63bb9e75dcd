"""The spool's publish contract for sealed clips: atomic, checked on load, recovered after a crash."""
from __future__ import annotations

import io
import json
import time

import pytest

from doorbell.core import age, signing
from doorbell.core import manifest as mf
from doorbell.core.bucket import sealed_keys
from doorbell.core.spool import SEALED_FILES, Sealing, Spool, SpoolError

META = {"device_id": "dev-a", "trigger": "ring", "pre_roll_s": 4.0, "duration_s": 10.0}


def stage(spool: Spool, sealing: Sealing, video: bytes, snapshot: bytes | None = b"\xff\xd8\xffjpeg"):
    t = time.time()
    st = spool.stage_clip(ts=t, sealing=sealing)
    sink = st.open_video()
    for i in range(0, len(video), 5000):  # as a muxer writes: many small pieces
        sink.write(video[i:i + 5000])
    if snapshot is not None:
        st.write_snapshot(snapshot)
    return st, dict(META, started_at=t, ended_at=t + 10, trigger_at=t + 4)


@pytest.fixture
def sealing() -> tuple[Sealing, age.X25519Identity]:
    owner = age.generate_identity()
    return Sealing((owner.recipient,), signing.generate_key()), owner


def opened(path, identity) -> bytes:
    out = io.BytesIO()
    with open(path, "rb") as fh:
        age.decrypt(fh, out, [identity])
    return out.getvalue()


def test_sealed_publish_is_atomic_and_complete(tmp_spool, sealing):
    seal, owner = sealing
    video = bytes(range(256)) * 1000  # 256 KB: several chunks
    st, meta = stage(tmp_spool, seal, video)
    assert tmp_spool.pending_clips() == []  # invisible while staged
    clip = st.publish(**meta)
    [loaded] = tmp_spool.pending_clips()
    assert loaded.sealed is not None and loaded.sealed.object_id == clip.sealed.object_id
    assert sorted(p.name for p in loaded.path.iterdir()) == sorted([*SEALED_FILES.values(), "meta.json"])
    assert opened(loaded.video, owner) == video
    full = json.loads(opened(loaded.path / SEALED_FILES["metadata"], owner))
    assert full["sha256"] == clip.clear.sha256 and full["size"] == len(video) and full["trigger"] == "ring"
    m = mf.verify_manifest(mf.load_manifest(opened(loaded.path / SEALED_FILES["manifest"], owner)),
                           signing.public_key_text(seal.device_key))
    assert m.files["video"].ciphertext_sha256 == loaded.sealed.files["video"].sha256
    assert m.files["snapshot"].plaintext_size == len(b"\xff\xd8\xffjpeg")
    with pytest.raises(SpoolError, match="encrypted"):
        loaded.clear  # noqa: B018  (on disk, the device cannot read a sealed clip's metadata)
    keys = sealed_keys("devices/", "dev-a", loaded.sealed.object_id)
    assert keys["video"] == f"devices/dev-a/o/{loaded.sealed.object_id}/v"
    assert tmp_spool.get_clip(clip.clip_id).finished_at > 0


def test_a_sealed_clip_with_a_missing_or_renamed_file_is_quarantined(tmp_spool, sealing):
    seal, _ = sealing
    st, meta = stage(tmp_spool, seal, b"v" * 70_000, snapshot=None)
    clip = st.publish(**meta)
    (clip.path / SEALED_FILES["manifest"]).unlink()
    assert tmp_spool.pending_clips() == []
    assert any(p.name.startswith(clip.clip_id) for p in tmp_spool.dir("quarantine").iterdir())
    st, meta = stage(tmp_spool, seal, b"w" * 10)
    clip = st.publish(**meta)
    index = json.loads((clip.path / "meta.json").read_text())
    index["files"]["video"]["name"] = "../../etc/passwd.age"
    (clip.path / "meta.json").write_text(json.dumps(index))
    assert tmp_spool.pending_clips() == []


def test_crash_while_recording_a_sealed_clip_leaves_nothing_readable(tmp_spool, sealing):
    seal, owner = sealing
    st, _meta = stage(tmp_spool, seal, b"x" * 200_000)
    # the process dies here: no final chunk, no index, no rename
    partial = st.video_path
    with pytest.raises(age.AgeError):
        opened(partial, owner)  # truncated: every age reader refuses it
    report = Spool(tmp_spool.root).recover()
    assert report.quarantined and tmp_spool.pending_clips() == []


def test_sealed_publish_without_video_fails_cleanly(tmp_spool, sealing):
    seal, _ = sealing
    st = tmp_spool.stage_clip(sealing=seal)
    t = time.time()
    with pytest.raises(SpoolError, match="no video"):
        st.publish(**dict(META, started_at=t, ended_at=t + 1, trigger_at=t))
    st.discard()
    assert list(tmp_spool.dir("tmp").iterdir()) == []
    with pytest.raises(SpoolError, match="at least one recipient"):
        Sealing((), seal.device_key)


def test_sealed_announcement_and_keys_refuse_bad_input():
    import base64

    from doorbell.core import protocol

    obj = {"key": "devices/dev-a/o/" + "a" * 32 + "/v", "sha256": "0" * 64, "size": 10}
    good = {"sealed": True, "device_id": "dev-a", "metadata": base64.b64encode(b"age...").decode(),
            "objects": {"video": obj, "metadata": obj, "manifest": obj}}
    msg = protocol.decode(protocol.SealedClipMessage, json.dumps(good), "clips")
    assert "clip_id" not in msg.to_json().decode() and "started" not in msg.to_json().decode()
    for bad in ({"objects": {"video": obj}},                                  # no metadata / manifest
                {"metadata": "not base64!"},
                {"metadata": "A" * 7000},                                    # larger than a sealed meta can be
                {"started_at": 1_800_000_000},                               # no clear time may ride along
                {"objects": {**good["objects"], "thumbnail": obj}}):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(protocol.SealedClipMessage, json.dumps({**good, **bad}), "clips")
    # a sealed announcement is not a clear ClipMessage (the sharing service drops it until its side lands)
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(protocol.ClipMessage, json.dumps(good), "clips")
    for bad_id in ("A" * 32, "a" * 31, "../" + "a" * 29):
        with pytest.raises(ValueError):
            sealed_keys("devices/", "dev-a", bad_id)
    with pytest.raises(ValueError):
        sealed_keys("devices/", "../x", "a" * 32)
