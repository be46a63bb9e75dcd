"""Doorbell firmware: GPIO, camera, motion, clips; writes only to the spool."""
