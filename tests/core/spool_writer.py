"""Helper process for the crash test: publishes clips and events as fast as it can
until killed. Clip contents are deterministic per clip so a reader can verify them."""
import hashlib
import sys

from doorbell.core.protocol import DeviceEvent
from doorbell.core.spool import Spool

spool = Spool(sys.argv[1])
print("ready", flush=True)  # imports done: the test kills us at a random point of the loop below
i = 0
while True:
    staging = spool.stage_clip()
    block = hashlib.sha256(staging.clip_id.encode()).digest() * 4096  # 128 KiB, per-clip pattern
    with open(staging.video_path, "wb") as fh:
        for _ in range(4):
            fh.write(block)
    staging.write_snapshot(b"\xff\xd8\xff" + block[:1000])
    staging.publish(device_id="dev-a", trigger="ring", started_at=1.8e9, ended_at=1.8e9 + 12,
                    trigger_at=1.8e9 + 4, pre_roll_s=4, duration_s=12)
    spool.publish_event(DeviceEvent(device_id="dev-a", type="ring", detail=f"n={i}"))
    i += 1
