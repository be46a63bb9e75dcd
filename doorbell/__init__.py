"""The consent-first doorbell's shared package, one sub-package per layer.

``core`` holds the contracts every part shares; ``clients`` the owner's app and
the agency client; ``ops`` provisioning, doctor and wipe; ``sandbox`` the
loopback servers and the demo; ``cli`` the ``doorbell`` script. The layers and
the rule for where new code goes are in docs/architecture.md and enforced by
``lint-imports`` (see ``.importlinter``).
"""
