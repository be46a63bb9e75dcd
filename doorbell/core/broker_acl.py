"""Mosquitto ACL and password files: the one place that renders them.

Consent is enforced by the broker as well as by signatures: a device may
write only under its own topic prefix, an owner only its own decisions,
revokes, RPC calls and its own devices' commands, and the sharing service
only the owner-facing topics it answers on. Every rule is an explicit
``user`` block (no ``pattern`` lines), so the rendered file can be read and
reviewed as it is, and a user that is not listed gets nothing at all.

Used by the test harness (:mod:`doorbell.sandbox.embedded`), ``doorbell-demo`` and
``doorbell provision broker``. The API:

- :func:`acl_rules` -> ``{username: [(access, topic), ...]}`` (data, for
  inspection and tests);
- :func:`render_acl` -> the ACL file text for ``acl_file``;
- :func:`hash_password` / :func:`password_line` / :func:`write_password_file`
  -> Mosquitto 2.x ``password_file`` entries, PBKDF2-SHA512 (``$7$``), made in
  pure Python so provisioning works where ``mosquitto_passwd`` is not
  installed. The format is byte-compatible with ``mosquitto_passwd -b``
  (``$7$<iterations>$<base64 12-byte salt>$<base64 64-byte hash>``; verified
  against Mosquitto 2.0.11, see ``tests/sandbox/test_broker_acl.py``).
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write
from doorbell.core.protocol import PREFIX

Access = Literal["read", "write", "readwrite"]
Rule = tuple[Access, str]

DEFAULT_SERVICE_USER = "sharing-service"
DEFAULT_HA_PREFIX = "homeassistant"

# Mosquitto 2.x defaults (mosquitto_passwd: 101 iterations, 12-byte salt, SHA-512).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12

# A username ends up inside the ACL file and in topic prefixes: a space, a
# newline, '+', '#' or '/' would change the meaning of the rules, so usernames
# are restricted to the protocol's id alphabet (plus the service/admin names).
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ACCESS = ("read", "write", "readwrite")


class AclError(DoorbellError, ValueError):
    """A username or rule that cannot be rendered safely."""


def check_username(name: str) -> str:
    """Return ``name`` if it is safe in an ACL/password file, else raise AclError."""
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise AclError(f"invalid broker username {name!r}: must match {USERNAME_RE.pattern}")
    return name


def check_rule(access: str, topic: str) -> Rule:
    """Validate one ``topic <access> <topic>`` rule (no whitespace or control chars)."""
    if access not in _ACCESS:
        raise AclError(f"invalid ACL access {access!r}: one of {', '.join(_ACCESS)}")
    if not topic or any(c.isspace() or ord(c) < 32 for c in topic) or "\x00" in topic:
        raise AclError(f"invalid ACL topic {topic!r}: no whitespace or control characters")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise AclError(f"invalid ACL topic {topic!r}: '#' only as the whole last level")
        if "+" in level and level != "+":
            raise AclError(f"invalid ACL topic {topic!r}: '+' only as a whole level")
    return access, topic  # type: ignore[return-value]


def device_rules(device_id: str, ha_prefix: str = DEFAULT_HA_PREFIX) -> list[Rule]:
    """A device writes only its own status/events/clips/snapshot and HA config, reads its commands."""
    d = f"{PREFIX}/devices/{check_username(device_id)}"
    return [
        ("write", f"{d}/status"),
        ("write", f"{d}/events"),
        ("write", f"{d}/clips"),
        ("write", f"{d}/snapshot"),
        ("read", f"{d}/commands/#"),
        ("write", f"{ha_prefix}/device/{device_id}/config"),
        ("read", f"{ha_prefix}/status"),
    ]


def owner_rules(owner_id: str, device_ids: Iterable[str] = ()) -> list[Rule]:
    """An owner reads its own owner tree, writes its decisions/revokes/RPC calls,
    and reads and commands only the devices it owns."""
    o = f"{PREFIX}/owners/{check_username(owner_id)}"
    rules: list[Rule] = [
        ("read", f"{o}/#"),
        ("write", f"{o}/decisions/+"),
        ("write", f"{o}/grants/+/revoke"),
        ("write", f"{o}/rpc/+"),
        # linked devices (doorbell.core.linking): enrol/unlink to the service, pairing between own devices
        ("write", f"{o}/keys/+/enrol"),
        ("write", f"{o}/keys/+/unlink"),
        ("write", f"{o}/pair/+"),
        # share links (sharing_service.shares)
        ("write", f"{o}/shares/+/create"),
        ("write", f"{o}/shares/+/revoke"),
    ]
    for d in sorted(device_ids):
        dev = f"{PREFIX}/devices/{check_username(d)}"
        rules += [("read", f"{dev}/#"), ("write", f"{dev}/commands/#")]
    return rules


def owner_login(owner_id: str, name: str) -> str:
    """A further broker login of an owner, ``<owner>.<name>`` (a browser, a phone), with the owner's rights.

    The broker binds a session to its login (``use_username_as_clientid``), so each
    of an owner's apps that is connected at the same time needs a login of its own.
    The owner id is the part before the dot (owner ids have no dots).
    """
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,30}$", name or ""):
        raise AclError(f"invalid login name {name!r}: lower-case letters, digits, '-' and '_' (at most 31)")
    return check_username(f"{check_username(owner_id)}.{name}")


def login_owner(login: str) -> str:
    """The owner a login belongs to: its own name, or the part before the dot of an owner login."""
    return login.split(".", 1)[0]


def service_rules() -> list[Rule]:
    """The sharing service indexes clips, takes decisions/revokes/RPC calls, and
    answers on the owner-facing topics; it can neither command a device nor
    forge an owner's decision topic."""
    return [
        ("read", f"{PREFIX}/devices/+/clips"),
        ("read", f"{PREFIX}/owners/+/decisions/+"),
        ("read", f"{PREFIX}/owners/+/grants/+/revoke"),
        ("read", f"{PREFIX}/owners/+/rpc/+"),
        ("read", f"{PREFIX}/owners/+/keys/+/enrol"),
        ("read", f"{PREFIX}/owners/+/keys/+/unlink"),
        ("read", f"{PREFIX}/owners/+/shares/+/create"),
        ("read", f"{PREFIX}/owners/+/shares/+/revoke"),
        ("write", f"{PREFIX}/owners/+/requests/+"),
        ("write", f"{PREFIX}/owners/+/results/+"),
        ("write", f"{PREFIX}/owners/+/grants/+"),
        ("write", f"{PREFIX}/owners/+/rpc/+/reply"),
        ("write", f"{PREFIX}/owners/+/keys/+"),
        ("write", f"{PREFIX}/owners/+/shares/+"),
    ]


def service_instance_login(n: int, base: str = DEFAULT_SERVICE_USER) -> str:
    """The broker login of sharing-service instance ``n`` (``sharing-service-2``...), with the service's rights.

    The broker binds a session to its login (``use_username_as_clientid``), so two
    instances sharing one login would take each other's session over: each
    instance of a scaled-out service logs in as its own user, and all of them
    join one shared subscription group (docs/sharing.md, "Running several instances").
    """
    if not isinstance(n, int) or n < 1 or n > 9999:
        raise AclError(f"invalid service instance number {n!r}: 1..9999")
    return check_username(f"{check_username(base)}-{n}")


def is_service_login(name: str, base: str = DEFAULT_SERVICE_USER) -> bool:
    """Whether ``name`` is the service's login or one of its instances' (``base-<n>``)."""
    return name == base or re.fullmatch(re.escape(base) + r"-[1-9][0-9]{0,3}", name) is not None


def admin_rules() -> list[Rule]:
    """Operators and test observers: everything."""
    return [("readwrite", "#")]


def ha_rules(ha_prefix: str = DEFAULT_HA_PREFIX) -> list[Rule]:
    """Home Assistant: reads every device topic, owns its discovery prefix."""
    return [("read", f"{PREFIX}/devices/#"), ("readwrite", f"{ha_prefix}/#")]


def acl_rules(
    devices: Mapping[str, str],
    owners: Iterable[str] = (),
    service_user: str | None = DEFAULT_SERVICE_USER,
    extra_admins: Iterable[str] = (),
    ha_users: Iterable[str] = (),
    ha_prefix: str = DEFAULT_HA_PREFIX,
    owner_logins: Iterable[str] = (),
    service_logins: Iterable[str] = (),
) -> dict[str, list[Rule]]:
    """Per-user rules as data: ``{username: [(access, topic), ...]}``.

    ``devices`` maps device id (= its broker username) to owner id. Every owner
    named there gets a user block even if missing from ``owners``, so a device
    can never be rendered without the owner who commands it. A name used for
    two roles is refused: merged rules would silently widen one of them.
    ``service_logins`` are further logins with the service's rules, one per
    instance of a scaled-out service (:func:`service_instance_login`).
    """
    out: dict[str, list[Rule]] = {}

    def add(user: str, rules: list[Rule]) -> None:
        check_username(user)
        if user in out:
            raise AclError(f"broker user {user!r} appears in two roles")
        out[user] = [check_rule(a, t) for a, t in rules]

    owned: dict[str, list[str]] = {}
    for dev, owner in devices.items():
        check_username(dev)
        owned.setdefault(check_username(owner), []).append(dev)
    for dev in sorted(devices):
        add(dev, device_rules(dev, ha_prefix))
    for owner in sorted(set(owners) | set(owned)):
        add(owner, owner_rules(owner, owned.get(owner, ())))
    all_owners = set(owners) | set(owned)
    for login in sorted(set(owner_logins)):
        owner = login_owner(login)
        if owner not in all_owners or "." not in login:
            raise AclError(f"owner login {login!r} names no known owner")
        add(login, owner_rules(owner, owned.get(owner, ())))
    if service_user:
        add(service_user, service_rules())
    for login in sorted(set(service_logins) - {service_user}):
        add(login, service_rules())
    for admin in sorted(set(extra_admins)):
        add(admin, admin_rules())
    for ha in sorted(set(ha_users)):
        add(ha, ha_rules(ha_prefix))
    return out


def format_acl(rules: Mapping[str, Iterable[Rule]], header: str | None = None) -> str:
    """Render ``{user: rules}`` as a Mosquitto ``acl_file``.

    Nothing is written before the first ``user`` line: rules there would apply
    to every user (and to anonymous clients).
    """
    lines = ["# Mosquitto ACL, generated by doorbell.core.broker_acl; do not edit by hand."]
    if header:
        lines += [f"# {h}" for h in header.splitlines()]
    for user, user_rules in rules.items():
        lines += ["", f"user {check_username(user)}"]
        for access, topic in user_rules:
            check_rule(access, topic)
            lines.append(f"topic {access} {topic}")
    return "\n".join(lines) + "\n"


def render_acl(
    devices: Mapping[str, str],
    owners: Iterable[str] = (),
    service_user: str | None = DEFAULT_SERVICE_USER,
    extra_admins: Iterable[str] = (),
    ha_users: Iterable[str] = (),
    ha_prefix: str = DEFAULT_HA_PREFIX,
    owner_logins: Iterable[str] = (),
    service_logins: Iterable[str] = (),
) -> str:
    """The Mosquitto ACL file text for these devices (id -> owner), owners, owner logins and roles."""
    return format_acl(acl_rules(devices, owners, service_user, extra_admins, ha_users, ha_prefix, owner_logins,
                                service_logins))


# ----------------------------------------------------------------------- passwords

def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2.x PBKDF2-SHA512 hash: ``$7$<iterations>$<b64 salt>$<b64 hash>``."""
    if not password:
        raise AclError("empty broker password")
    if any(c in password for c in "\r\n\x00"):
        raise AclError("broker password must not contain newlines or NUL")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Check ``password`` against a ``$7$`` entry (as Mosquitto does)."""
    try:
        _, kind, iterations, salt_b64, hash_b64 = hashed.split("$")
        if kind != "7":
            return False
        digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"),
                                     base64.b64decode(salt_b64), int(iterations))
    except (ValueError, TypeError):
        return False
    return secrets.compare_digest(base64.b64encode(digest).decode(), hash_b64)


def password_line(username: str, password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    """One ``password_file`` line (no newline)."""
    return f"{check_username(username)}:{hash_password(password, iterations=iterations)}"


def render_password_file(users: Mapping[str, str], iterations: int = PBKDF2_ITERATIONS) -> str:
    """The whole ``password_file`` text for ``{username: password}``."""
    return "".join(password_line(u, p, iterations) + "\n" for u, p in sorted(users.items()))


def write_password_file(path: str | os.PathLike[str], users: Mapping[str, str],
                        iterations: int = PBKDF2_ITERATIONS) -> Path:
    """Write a Mosquitto ``password_file`` atomically, mode 0600 (it holds hashes).

    ``iterations`` defaults to Mosquitto's own 101 (what ``mosquitto_passwd``
    writes); Mosquitto 2.x reads the count from each entry, so a production
    broker may use more (each CONNECT then costs proportionally more CPU).
    """
    return atomic_write(path, render_password_file(users, iterations), mode=0o600)


def write_acl_file(path: str | os.PathLike[str], acl_text: str) -> Path:
    """Write an ACL file atomically (mode 0640)."""
    return atomic_write(path, acl_text, mode=0o640)


def generate_password(nbytes: int = 24) -> str:
    """A random URL-safe password for a broker user."""
    return secrets.token_urlsafe(nbytes)
