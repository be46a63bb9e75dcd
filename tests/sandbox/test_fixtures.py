"""The shared fixtures in tests/conftest.py give what they promise."""
from __future__ import annotations

from pathlib import Path

from doorbell.core import protocol
from doorbell.sandbox.embedded import mqtt_client as connect


def test_sample_videos_are_real_decodable_footage(sample_videos):
    import av

    names = {p.name for p in sample_videos}
    assert {"bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"} <= names
    with av.open(str(sample_videos[0])) as container:
        frame = next(container.decode(video=0))
        assert frame.width > 0 and frame.height > 0


def test_mock_pins_drive_real_gpiozero_code(mock_pins):
    from gpiozero import Button, Device

    assert Device.pin_factory is mock_pins
    button = Button(17, pull_up=True, bounce_time=None)
    try:
        assert not button.is_pressed
        mock_pins.pin(17).drive_low()
        assert button.is_pressed
    finally:
        button.close()


def test_tmp_spool_is_an_empty_spool(tmp_spool, tmp_path):
    assert Path(tmp_spool.root).is_relative_to(tmp_path)
    assert tmp_spool.pending_clips() == [] and tmp_spool.pending_events() == []


def test_device_config_reaches_the_real_servers(device_config, broker, s3):
    cfg = device_config("dev-b", clips={"pre_roll_s": 2.0})
    assert (cfg.device.id, cfg.device.owner_id, cfg.clips.pre_roll_s) == ("dev-b", "owner-b", 2.0)
    client = connect(cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username, cfg.mqtt.password.get_secret_value())
    try:
        assert not client.pub(protocol.events_topic("dev-b"), b"{}", qos=1).is_failure
    finally:
        client.close()
    import boto3

    s3c = boto3.client("s3", endpoint_url=cfg.s3.endpoint_url, region_name=cfg.s3.region,
                       aws_access_key_id=cfg.s3.access_key_id,
                       aws_secret_access_key=cfg.s3.secret_access_key.get_secret_value())
    s3c.head_bucket(Bucket=cfg.s3.bucket)


def test_clean_broker_has_no_retained_messages(broker, mqtt_client):
    topic = protocol.snapshot_topic("dev-a")
    assert not mqtt_client("dev-a").pub(topic, b"\xff\xd8jpeg", qos=1, retain=True).is_failure
    assert topic in broker.clear_retained()
    watcher = mqtt_client("admin")
    watcher.sub("doorbell/v1/#", qos=1)
    assert [m.topic for m in watcher.drain(settle=0.3) if m.retain] == []
