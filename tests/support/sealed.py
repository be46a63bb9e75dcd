"""Sealed clips for tests: what the firmware and the agent do for one clip with encryption on."""
from __future__ import annotations

from typing import Any

from doorbell.core import protocol as p
from doorbell.core.spool import SEALED_FILES, Sealing, Spool


def seal_and_upload(s3: Any, device_client: Any, spool: Spool, seal: Sealing, device: str, t: float, video: bytes,
                    snapshot: bytes) -> dict[str, Any]:
    """Seal one clip with the spool's age writer, upload its objects under opaque names and announce it
    (``device_client`` is the device's own MQTT connection)."""
    st = spool.stage_clip(ts=t, sealing=seal)
    sink = st.open_video()
    for i in range(0, len(video), 65536):
        sink.write(video[i:i + 65536])
    st.write_snapshot(snapshot)
    clip = st.publish(device_id=device, trigger="ring", started_at=t, ended_at=t + 10, trigger_at=t + 4,
                      pre_roll_s=4.0, duration_s=10.0)
    loaded = spool.get_clip(clip.clip_id)
    msg = loaded.sealed_message("", device)
    client = s3.client()
    for kind, obj in msg.objects.items():
        client.put_object(Bucket=s3.bucket, Key=obj.key, Body=(loaded.path / SEALED_FILES[kind]).read_bytes())
    device_client.pub(p.clips_topic(device), msg.to_json(), qos=1)
    return {"clip_id": clip.clip_id, "t": t, "video": video, "snapshot": snapshot, "objects": msg.objects}
