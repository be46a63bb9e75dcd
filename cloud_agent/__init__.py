"""Cloud agent: the device's only network-facing process (spool -> S3 + MQTT)."""
