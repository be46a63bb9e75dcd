"""Shared core of the consent-first doorbell: config, spool, protocol, signing, CLI.

Each contract between the parts lives in exactly one module here:
``config`` (the validated config model), ``spool`` (firmware -> agent files),
``protocol`` (MQTT topics and message schemas), ``signing`` (owner consent).
"""
__version__ = "0.1.0"
