"""``doorbell provision``: unique credentials and TLS material for every party.

ETSI EN 303 645 5.1-1 / 5.4-3 / 5.4-4: nothing ships with a default or shared
secret. A cloud operator runs ``provision broker`` once, which creates a
private CA (EC P-256), the broker's server certificate, a Mosquitto config
(TLS 1.2+ only, no anonymous clients, password file, ACL, client certificates
required) and a registry of who may connect. Then ``provision device`` /
``provision owner`` add one identity each: a random MQTT password (only its
PBKDF2 hash is kept on the broker), a client certificate with the identity as
its CN, and a ready-to-install config file. The ACL is always re-rendered from
the registry by :mod:`doorbell.core.broker_acl`, the one place that knows the rules.

Broker directory layout (``--out``)::

    registry.yaml          who exists (devices with their owner, owners, services)
    ca/ca.key ca/ca.crt    the private CA (keep ca.key offline once devices are issued)
    server.key server.crt  the broker's TLS identity
    passwd                 Mosquitto password_file ($7$ PBKDF2-SHA512 hashes), 0600
    acl                    Mosquitto acl_file, rendered from registry.yaml
    mosquitto.conf         include it from /etc/mosquitto/conf.d/
    device-keys.json       each device's Ed25519 public key (signs its clip manifests), for the
                           sharing service's registry and for ``doorbell verify --device-key``
    clients/<name>/        one bundle per identity, to hand over and then delete

A device bundle also holds ``device_ed25519.pem`` (the device's manifest-signing
key, made here, installed next to device.yaml) and the household's age
recipients in ``encryption.recipients`` (from ``--recipient`` or an owner's
recipients file written by ``doorbell owner keys``). Nothing in it opens a clip.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from doorbell.core.bucket import device_prefix
from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write

log = logging.getLogger(__name__)

REGISTRY_VERSION = 1
SERVICE_USER = "sharing-service"
SHARING_CREDENTIALS = "/run/credentials/doorbell-sharing.service"
DEFAULT_DAYS = 825          # client/server certificates: rotate at least every ~2 years
DEFAULT_WS_PORT = 8884  # MQTT over TLS WebSockets (the owner's browser app)
CA_DAYS = 3650
DEVICE_KEY_FILE = "device_ed25519.pem"   # in the device bundle and next to /etc/doorbell/device.yaml
DEVICE_KEYS = "device-keys.json"         # in the broker dir: device id -> ed25519:... public key


class ProvisionError(DoorbellError):
    """A provisioning step cannot go ahead; the message says why and what to do."""


# --------------------------------------------------------------------------- files

def write_file(path: Path, data: bytes | str, mode: int, gid: int | None = None) -> None:
    """Write atomically with ``mode`` from the first byte (no window with wider access).

    ``gid``: group owner, so a broker running as ``mosquitto`` can read a 0640 file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode=mode, gid=gid)


# --------------------------------------------------------------------------- PKI

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key():
    """EC P-256: supported by every TLS 1.2/1.3 stack (Mosquitto, OpenSSL, paho, phones)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, org: str = "Doorbell"):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "Doorbell private CA", days: int = CA_DAYS):
    """A self-signed CA that may sign only end-entity certificates (pathlen 0)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    key = new_key()
    name = _name(cn)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_cert(ca_key, ca_cert, cn: str, *, server: bool, dns: Sequence[str] = (), ips: Sequence[str] = (),
               days: int = DEFAULT_DAYS):
    """Issue a leaf certificate: serverAuth with SANs for the broker, clientAuth for a user."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    key = new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        sans: list[Any] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if not sans:
            raise ProvisionError("the broker certificate needs at least one --hostname or --ip")
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


# --------------------------------------------------------------------------- broker directory

@dataclass
class Identity:
    """What one provisioned party receives (the password exists only here and in its bundle)."""

    role: str
    name: str
    password: str
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


class BrokerDir:
    """A provisioned broker directory; every change happens under an exclusive lock."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    @property
    def gid(self) -> int | None:
        """Group of the broker process (from the registry), for files it must read."""
        try:
            group = (yaml.safe_load(self.registry_file.read_text(encoding="utf-8")) or {}) \
                .get("broker", {}).get("group")
        except OSError:
            return None
        return _group_id(group) if group else None

    # paths
    @property
    def registry_file(self) -> Path: return self.root / "registry.yaml"
    @property
    def ca_key(self) -> Path: return self.root / "ca" / "ca.key"
    @property
    def ca_cert(self) -> Path: return self.root / "ca" / "ca.crt"
    @property
    def server_key(self) -> Path: return self.root / "server.key"
    @property
    def server_cert(self) -> Path: return self.root / "server.crt"
    @property
    def passwd(self) -> Path: return self.root / "passwd"
    @property
    def acl(self) -> Path: return self.root / "acl"
    @property
    def conf(self) -> Path: return self.root / "mosquitto.conf"

    def client_dir(self, name: str) -> Path:
        return self.root / "clients" / name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def exists(self) -> bool:
        return self.registry_file.exists()

    def load_registry(self) -> dict[str, Any]:
        if not self.exists():
            raise ProvisionError(f"{self.root} is not a provisioned broker directory "
                                 f"(run: doorbell provision broker --out {self.root})")
        data = yaml.safe_load(self.registry_file.read_text(encoding="utf-8")) or {}
        if data.get("version") != REGISTRY_VERSION:
            raise ProvisionError(f"{self.registry_file}: unsupported registry version {data.get('version')!r}")
        for key in ("devices", "owners", "services", "logins"):
            data.setdefault(key, {})
        return data

    def save_registry(self, data: dict[str, Any]) -> None:
        header = ("# Broker registry, maintained by `doorbell provision`; the ACL and the\n"
                  "# password file are generated from it. Holds no secrets.\n")
        write_file(self.registry_file, header + yaml.safe_dump(data, sort_keys=True), 0o600)

    def load_ca(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        if not self.ca_key.exists():
            raise ProvisionError(f"{self.ca_key} is missing: put the CA key back (it is needed to issue "
                                 "certificates) or provision a new broker")
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        return key, cert

    # password file: keep other users' hashes, replace one line
    def set_password(self, user: str, password: str) -> None:
        from doorbell.core.broker_acl import password_line
        lines = []
        if self.passwd.exists():
            lines = [ln for ln in self.passwd.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and ln.split(":", 1)[0] != user]
        lines.append(password_line(user, password))
        self._write_broker_file(self.passwd, "".join(sorted(ln + "\n" for ln in lines)))

    def remove_password(self, user: str) -> None:
        if self.passwd.exists():
            lines = [ln for ln in self.passwd.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and ln.split(":", 1)[0] != user]
            self._write_broker_file(self.passwd, "".join(ln + "\n" for ln in lines))

    def render_acl(self, reg: dict[str, Any]) -> None:
        from doorbell.core.broker_acl import render_acl
        devices = {d: info["owner"] for d, info in reg["devices"].items()}
        services = list(reg["services"])
        text = render_acl(devices, owners=list(reg["owners"]), owner_logins=list(reg.get("logins", {})),
                          service_user=SERVICE_USER if SERVICE_USER in services else None,
                          service_logins=[s for s in services if s != SERVICE_USER
                                          and reg["services"][s].get("role") == "service"],
                          extra_admins=[s for s in services if reg["services"][s].get("role") == "admin"],
                          ha_users=[s for s in services if reg["services"][s].get("role") == "ha"])
        self._write_broker_file(self.acl, text)

    def _write_broker_file(self, path: Path, data: bytes | str) -> None:
        """A file Mosquitto reads: 0640 root:<broker group> if one is set, else 0600."""
        gid = self.gid
        write_file(path, data, 0o640 if gid is not None else 0o600, gid)


def render_mosquitto_conf(files_dir: Path, port: int, bind: str, data_dir: Path | None,
                          require_client_cert: bool = True, ws_port: int | None = DEFAULT_WS_PORT) -> str:
    """The Mosquitto 2.x config: a TLS MQTT listener and (unless ``ws_port`` is None) a TLS
    WebSockets listener for the owner's browser app; authenticated users only, ACL enforced."""
    lines = [
        "# Mosquitto config for the doorbell broker, generated by `doorbell provision broker`.",
        "# TLS 1.2+ only, no anonymous clients, one password and one client certificate",
        "# per device/owner/service, per-user ACL (doorbell/core/broker_acl.py). After adding",
        "# users run `systemctl reload mosquitto` (SIGHUP re-reads passwd and acl).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {files_dir / 'passwd'}",
        f"acl_file {files_dir / 'acl'}",
        "",
        f"listener {port} {bind}",
        "protocol mqtt",
        f"cafile {files_dir / 'ca.crt'}",
        f"certfile {files_dir / 'server.crt'}",
        f"keyfile {files_dir / 'server.key'}",
        "tls_version tlsv1.2",
        f"require_certificate {'true' if require_client_cert else 'false'}",
        "use_identity_as_username false",
        "# The client id is replaced by the login, so no user can take over another",
        "# user's session (e.g. a device claiming the id 'sharing-service').",
        "use_username_as_clientid true",
        "",
    ]
    if ws_port:
        lines += [
            "# MQTT over TLS WebSockets for the owner's browser app (docs/owner-app.md). Browsers cannot",
            "# present a client certificate: this listener authenticates by password over TLS.",
            "# Mosquitto 2.0.11 (Debian 12) binds a WebSockets listener to EVERY interface whatever",
            "# address is given (eclipse/mosquitto#3045); socket_domain ipv4 makes it honour the address.",
            f"listener {ws_port} {bind}",
            "protocol websockets",
            "use_username_as_clientid true",
            *(["socket_domain ipv4"] if ":" not in bind else []),
            f"cafile {files_dir / 'ca.crt'}",
            f"certfile {files_dir / 'server.crt'}",
            f"keyfile {files_dir / 'server.key'}",
            "tls_version tlsv1.2",
            "require_certificate false",
            "",
        ]
    lines += [
        "max_packet_size 1048576",
        "max_inflight_messages 20",
        "max_queued_messages 1000",
    ]
    if data_dir is not None:
        lines += ["persistence true", f"persistence_location {data_dir}/"]
    else:
        lines += ["# persistence: as set by the main mosquitto.conf (Debian: /var/lib/mosquitto/),",
                  "# which includes this file from conf.d/ (a second persistence_location is an error)."]
    return "\n".join(lines) + "\n"


def _group_id(name: str) -> int:
    import grp
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ProvisionError(f"group {name!r} does not exist (install mosquitto first, or pass --group '')") from None


def default_broker_group() -> str | None:
    """'mosquitto' when we are root and the Debian package created it, else None."""
    import grp
    if os.geteuid() != 0:
        return None
    try:
        grp.getgrnam("mosquitto")
        return "mosquitto"
    except KeyError:
        return None


def create_broker(out: Path, *, hostnames: list[str], ips: list[str], port: int = 8883,
                  bind: str = "0.0.0.0", files_dir: Path | None = None, data_dir: Path | None = None,
                  days: int = DEFAULT_DAYS, require_client_cert: bool = True,
                  group: str | None = None, ws_port: int | None = DEFAULT_WS_PORT) -> tuple[BrokerDir, Identity]:
    """Create a new broker directory with CA, server cert, config and the sharing-service user.

    ``group``: the group Mosquitto runs as; the broker's own files (server key,
    passwd, acl) become 0640 root:group and the directory 0750, while ``ca/``
    and ``clients/`` stay 0700 so the broker process can never read the CA key
    or another party's bundle.
    """
    bdir = BrokerDir(out)
    if bdir.exists():
        raise ProvisionError(f"{bdir.root} already holds a provisioned broker; refusing to overwrite its CA "
                             "(use another --out, or add identities with `provision device/owner`)")
    if bdir.root.exists() and any(p.name != ".lock" for p in bdir.root.iterdir()):
        raise ProvisionError(f"{bdir.root} exists and is not empty; give --out a new directory "
                             "(e.g. /etc/mosquitto/doorbell), its mode and group are set for the broker")
    gid = _group_id(group) if group else None
    with bdir.locked():
        if gid is not None:
            os.chown(bdir.root, -1, gid)
            os.chmod(bdir.root, 0o750)
        (bdir.root / "ca").mkdir(mode=0o700, exist_ok=True)
        (bdir.root / "clients").mkdir(mode=0o700, exist_ok=True)
        ca_key, ca_cert = make_ca()
        write_file(bdir.ca_key, key_pem(ca_key), 0o600)
        write_file(bdir.ca_cert, cert_pem(ca_cert), 0o644)
        write_file(bdir.root / "ca.crt", cert_pem(ca_cert), 0o644)
        s_key, s_cert = issue_cert(ca_key, ca_cert, hostnames[0] if hostnames else ips[0],
                                   server=True, dns=hostnames, ips=ips, days=days)
        write_file(bdir.server_key, key_pem(s_key), 0o640 if gid is not None else 0o600, gid)
        write_file(bdir.server_cert, cert_pem(s_cert), 0o644)
        files = Path(files_dir) if files_dir else bdir.root
        write_file(bdir.conf, render_mosquitto_conf(files, port, bind, data_dir, require_client_cert,
                                                          ws_port), 0o644)
        reg = {"version": REGISTRY_VERSION,
               "broker": {"hostnames": hostnames, "ips": ips, "port": port, "group": group, "ws_port": ws_port,
                          "require_client_cert": require_client_cert},
               "devices": {}, "owners": {}, "services": {}}
        bdir.save_registry(reg)
        bdir._write_broker_file(bdir.passwd, "")
        ident = _add_identity(bdir, reg, "service", SERVICE_USER, days=days)
        bdir.save_registry(reg)
        bdir.render_acl(reg)
    service_bundle(bdir, ident, out=bdir.client_dir(ident.name))
    return bdir, ident


def _add_identity(bdir: BrokerDir, reg: dict[str, Any], role: str, name: str, *, owner: str | None = None,
                  rotate: bool = False, days: int = DEFAULT_DAYS, service_role: str = "service") -> Identity:
    """Register ``name``, give it a fresh random password and client certificate (lock held)."""
    from doorbell.core.broker_acl import check_username, generate_password
    check_username(name)
    table = {"device": "devices", "owner": "owners", "service": "services", "login": "logins"}[role]
    taken = {n: t for t in ("devices", "owners", "services", "logins") for n in reg.setdefault(t, {})}
    if name in taken and (taken[name] != table or not rotate):
        what = "already exists" if taken[name] == table else f"is already used by a {taken[name][:-1]}"
        raise ProvisionError(f"identity {name!r} {what}; identities are unique"
                             + (" (pass --rotate to issue new credentials)" if taken[name] == table else ""))
    entry: dict[str, Any] = {"created": int(_now().timestamp())}
    if owner is not None:
        entry["owner"] = owner
        if owner not in reg["owners"]:
            raise ProvisionError(f"owner {owner!r} is not provisioned yet (run: doorbell provision owner "
                                 f"--broker-dir {bdir.root} --id {owner})")
    if role == "service":
        entry["role"] = service_role
    reg[table][name] = entry
    password = generate_password()
    bdir.set_password(name, password)
    ca_key, ca_cert = bdir.load_ca()
    c_key, c_cert = issue_cert(ca_key, ca_cert, name, server=False, days=days)
    return Identity(role, name, password, cert_pem(c_cert), key_pem(c_key), cert_pem(ca_cert))


def add_identity(bdir: BrokerDir, role: str, name: str, *, owner: str | None = None,
                 rotate: bool = False, days: int = DEFAULT_DAYS, service_role: str = "service") -> Identity:
    """Add (or with ``rotate`` re-key) one identity and re-render the ACL."""
    with bdir.locked():
        reg = bdir.load_registry()
        ident = _add_identity(bdir, reg, role, name, owner=owner, rotate=rotate, days=days,
                              service_role=service_role)
        bdir.save_registry(reg)
        bdir.render_acl(reg)
    return ident


def remove_identity(bdir: BrokerDir, name: str) -> None:
    """Revoke a device/owner/service: delete its password and ACL block (reload Mosquitto after)."""
    with bdir.locked():
        reg = bdir.load_registry()
        for table in ("devices", "owners", "services", "logins"):
            if name in reg.setdefault(table, {}):
                if table == "owners":
                    owned = [d for d, i in reg["devices"].items() if i.get("owner") == name]
                    owned += [x for x, i in reg["logins"].items() if i.get("owner") == name]
                    if owned:
                        raise ProvisionError(f"owner {name!r} still owns {', '.join(owned)}: remove those first")
                del reg[table][name]
                break
        else:
            raise ProvisionError(f"no identity named {name!r}")
        bdir.remove_password(name)
        bdir.save_registry(reg)
        bdir.render_acl(reg)


# --------------------------------------------------------------------------- bundles

def s3_device_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """IAM policy (AWS, MinIO `mc admin policy create`, Garage/SeaweedFS IAM) for one device.

    The device may create objects (incl. multipart uploads) and read back their
    metadata under its own prefix only; it cannot delete, list other prefixes or
    read anything else. ListBucket restricted by ``s3:prefix`` lets HEAD on a
    missing key answer 404 instead of 403.
    """
    p = prefix.lstrip("/")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "DoorbellDeviceWriteOwnPrefix", "Effect": "Allow",
             "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": [f"arn:aws:s3:::{bucket}/{p}*"]},
            {"Sid": "DoorbellDeviceListOwnPrefix", "Effect": "Allow",
             "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
             "Condition": {"StringLike": {"s3:prefix": [f"{p}*"]}}},
        ],
    }


def seaweedfs_device_actions(bucket: str, prefix: str) -> list[str]:
    """The same scope as :func:`s3_device_policy` in SeaweedFS's ``s3.json`` identity syntax
    (its IAM API maps policies only to whole buckets, so prefixes go here)."""
    p = prefix.lstrip("/")
    return [f"Write:{bucket}/{p}*", f"Read:{bucket}/{p}*", f"List:{bucket}/{p}*"]


def _tls_section(config_dir: str) -> dict[str, Any]:
    return {"enabled": True, "ca_file": f"{config_dir}/tls/ca.crt",
            "cert_file": f"{config_dir}/tls/client.crt", "key_file": f"{config_dir}/tls/client.key",
            "insecure_skip_verify": False}


def _write_bundle(out: Path, ident: Identity, config_name: str, config: dict[str, Any], header: str) -> Path:
    """Write the identity's config (0600) and TLS files; validate the config first."""
    from doorbell.core.config import parse_config
    parse_config(config, f"{out / config_name}", env={}).require("mqtt.password")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    write_file(out / "tls" / "ca.crt", ident.ca_pem, 0o644)
    write_file(out / "tls" / "client.crt", ident.cert_pem, 0o644)
    write_file(out / "tls" / "client.key", ident.key_pem, 0o600)
    text = header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    write_file(out / config_name, text, 0o600)
    return out / config_name


def _mqtt_section(reg: dict[str, Any], ident: Identity, host: str | None, port: int | None,
                  config_dir: str) -> dict[str, Any]:
    b = reg.get("broker", {})
    host = host or (b.get("hostnames") or b.get("ips") or ["127.0.0.1"])[0]
    return {"host": host, "port": port or b.get("port", 8883), "username": ident.name,
            "password": ident.password, "tls": _tls_section(config_dir)}


def read_recipients(values: list[str], files: list[Path]) -> list[str]:
    """age recipients from ``--recipient`` values and recipients files, validated, in order, without repeats.

    A recipients file is what ``age -R`` reads: one ``age1...`` per line, ``#``
    comments and blank lines ignored (``doorbell owner keys`` writes one).
    """
    from doorbell.core.age import AgeError, parse_recipient

    found: list[tuple[str, str]] = [(f"--recipient #{i + 1}", v) for i, v in enumerate(values)]
    for path in files:
        try:
            lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ProvisionError(f"cannot read recipients file {path}: {reason}") from None
        found += [(f"{path} line {n}", line.strip()) for n, line in enumerate(lines, 1)
                  if line.strip() and not line.strip().startswith("#")]
    out: list[str] = []
    for where, text in found:
        try:
            key = str(parse_recipient(text))
        except AgeError as exc:  # never echo the text: it may be a pasted secret key
            raise ProvisionError(f"{where}: not an age recipient (age1...): {exc}") from None
        if key not in out:
            out.append(key)
    return out


def register_device_key(bdir: BrokerDir, device_id: str, public_key: str) -> Path:
    """Record a device's manifest-signing public key in ``device-keys.json`` (atomic, sorted)."""
    path = bdir.root / DEVICE_KEYS
    try:
        keys = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"{path} is unreadable ({exc}); fix or remove it") from None
    if not isinstance(keys, dict):
        raise ProvisionError(f"{path} is not a JSON object of device id -> key")
    keys[device_id] = public_key
    write_file(path, json.dumps(dict(sorted(keys.items())), indent=2) + "\n", 0o644)
    return path


def device_bundle(bdir: BrokerDir, ident: Identity, *, owner: str, out: Path, name: str = "Front door",
                  mqtt_host: str | None = None, mqtt_port: int | None = None,
                  config_dir: str = "/etc/doorbell", bucket: str = "doorbell-clips",
                  endpoint_url: str | None = None, region: str = "us-east-1", prefix_base: str = "",
                  s3_access_key_id: str | None = None, s3_secret: str | None = None,
                  recipients: list[str] | None = None, encrypt: bool = False) -> dict[str, Any]:
    """Write a device's bundle (device.yaml, tls/, device key, s3-policy.json); return the S3 policy.

    The device's Ed25519 key is made once (kept on ``--rotate``) and its public
    key registered in the broker dir's ``device-keys.json``.
    """
    from doorbell.core.signing import generate_key, load_private_key, public_key_text, save_private_key
    reg = bdir.load_registry()
    base = prefix_base.strip("/")
    fleet_prefix = f"{base + '/' if base else ''}devices/"  # s3.prefix: the same on every host
    prefix = device_prefix(fleet_prefix, ident.name)       # what this device may write
    s3: dict[str, Any] = {"endpoint_url": endpoint_url, "region": region, "bucket": bucket, "prefix": fleet_prefix}
    if s3_access_key_id:
        s3["access_key_id"] = s3_access_key_id
    if s3_secret:
        s3["secret_access_key"] = s3_secret
    config = {
        "device": {"id": ident.name, "owner_id": owner, "name": name},
        "spool": {"dir": "/var/lib/doorbell/spool"},
        "mqtt": _mqtt_section(reg, ident, mqtt_host, mqtt_port, config_dir),
        "s3": s3,
        "encryption": {"enabled": encrypt, "recipients": list(recipients or []),
                       "device_key_file": f"{config_dir}/{DEVICE_KEY_FILE}"},
    }
    if encrypt and not recipients:
        raise ProvisionError("--encrypt needs the household's recipients: --recipient age1... or "
                             "--recipients-file (doorbell owner keys writes one)")
    header = (f"# Device {ident.name} (owner {owner}), generated by `doorbell provision device`.\n"
              "# Holds this device's unique secrets: install as /etc/doorbell/device.yaml, mode 0600,\n"
              "# owner doorbell (scripts/install-pi.sh --bundle DIR does this). Every other key has\n"
              "# its default; see config/device.yaml for all of them with comments.\n")
    _write_bundle(out, ident, "device.yaml", config, header)
    key_path = out / DEVICE_KEY_FILE
    if key_path.exists():   # --rotate renews broker credentials; the signing identity stays
        key = load_private_key(key_path)
    else:
        key = generate_key()
        save_private_key(key, key_path)
    pub = public_key_text(key)
    write_file(out / "device_ed25519.pub", pub + "\n", 0o644)
    register_device_key(bdir, ident.name, pub)
    policy = s3_device_policy(bucket, prefix)
    write_file(out / "s3-policy.json", json.dumps(policy, indent=2) + "\n", 0o644)
    seaweed = {"name": ident.name, "credentials": [{"accessKey": "KEY", "secretKey": "SECRET"}],
               "actions": seaweedfs_device_actions(bucket, prefix)}
    write_file(out / "seaweedfs-identity.json", json.dumps(seaweed, indent=2) + "\n", 0o644)
    return policy


def owner_bundle(bdir: BrokerDir, ident: Identity, *, out: Path, mqtt_host: str | None = None,
                 mqtt_port: int | None = None, config_dir: str = "~/.config/doorbell",
                 sharing_url: str = "http://127.0.0.1:8080") -> Path:
    reg = bdir.load_registry()
    config = {
        "owner": {"owner_id": ident.name, "key_file": f"{config_dir}/owner_ed25519.pem",
                  "sharing_url": sharing_url},
        "mqtt": _mqtt_section(reg, ident, mqtt_host, mqtt_port, config_dir),
    }
    header = (f"# Owner {ident.name}, generated by `doorbell provision owner`. Install as\n"
              f"# {config_dir}/owner.yaml (mode 0600) with tls/ next to it. Your Ed25519 signing key\n"
              "# is made on your own machine and never leaves it (see docs/install.md).\n")
    return _write_bundle(out, ident, "owner.yaml", config, header)


def owner_login_bundle(bdir: BrokerDir, ident: Identity, *, out: Path, ws_url: str | None = None) -> Path:
    """What the owner types into the browser app: its login, password and the broker's WebSockets URL."""
    reg = bdir.load_registry()
    b = reg.get("broker", {})
    host = (b.get("hostnames") or b.get("ips") or ["127.0.0.1"])[0]
    url = ws_url or f"wss://{host}:{b.get('ws_port') or DEFAULT_WS_PORT}/"
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    text = (f"# Browser login for owner {reg['logins'][ident.name]['owner']}, generated by "
            "`doorbell provision owner-login`.\n# Type these into the app's sign-in screen; "
            "then link the browser (`doorbell owner link`).\n"
            + yaml.safe_dump({"broker_url": url, "login": ident.name, "password": ident.password}, sort_keys=False))
    write_file(out / "login.yaml", text, 0o600)
    write_file(out / "ca.crt", ident.ca_pem, 0o644)
    return out / "login.yaml"


HA_BUNDLE = "home-assistant.yaml"


def service_bundle(bdir: BrokerDir, ident: Identity, *, out: Path, mqtt_host: str | None = None,
                   mqtt_port: int | None = None, config_dir: str = "/etc/doorbell",
                   role: str = "service") -> Path:
    """Write a service user's bundle, named and explained for whoever uses it.

    The sharing service (and an admin) read ``sharing.yaml``-style config; Home
    Assistant reads no file at all: its MQTT integration is set up in the UI, so
    its bundle says which value goes into which field, and where the three TLS
    files are uploaded (a broker from ``provision broker`` requires the client
    certificate, not only the CA).
    """
    from doorbell.core.broker_acl import is_service_login
    reg = bdir.load_registry()
    if role == "ha":
        config = {"mqtt": _mqtt_section(reg, ident, mqtt_host, mqtt_port, str(out))}
        m = config["mqtt"]
        header = (f"# Home Assistant's broker login ({ident.name}),\n"
                  "# generated by `doorbell provision service --role ha`.\n"
                  "# Home Assistant does not read this file: enter the values in Settings -> Devices & services\n"
                  "# -> Add integration -> MQTT (or MQTT -> Configure -> Re-configure MQTT):\n"
                  f"#   Broker: {m['host']}   Port: {m['port']}   Username: {m['username']}   Password: below\n"
                  "#   Advanced options: Broker certificate validation: Custom -> upload tls/ca.crt;\n"
                  "#     Use a client certificate: on -> upload tls/client.crt and the private key tls/client.key;\n"
                  "#     Transport: TCP; Broker protocol: 5 (3.1.1 works too)\n"
                  "# The broker refuses a login without the client certificate (TLSV13_ALERT_CERTIFICATE_REQUIRED).\n"
                  "# See docs/home-assistant.md. Keep this directory private: it holds the password and key.\n")
        return _write_bundle(out, ident, HA_BUNDLE, config, header)
    config = {"mqtt": _mqtt_section(reg, ident, mqtt_host or "127.0.0.1", mqtt_port, config_dir)}
    if is_service_login(ident.name, SERVICE_USER) and config_dir == "/etc/doorbell":
        # doorbell-sharing.service runs as a DynamicUser: its key arrives as a systemd credential.
        config["mqtt"]["tls"]["key_file"] = f"{SHARING_CREDENTIALS}/client.key"
    if ident.name != SERVICE_USER and is_service_login(ident.name, SERVICE_USER):
        # one instance of several: the broker hands each owner message to one member of the group,
        # whose name is a secret of the instances (Mosquitto lets any login that knows it join)
        config["sharing"] = {"mqtt_shared": True, "mqtt_share_group": _share_group(bdir)}
    header = (f"# Broker credentials for {ident.name}, generated by `doorbell provision`.\n"
              "# Merge into /etc/doorbell/sharing.yaml (root:root 0600; see config/sharing.yaml).\n")
    return _write_bundle(out, ident, "sharing.yaml", config, header)


def _share_group(bdir: BrokerDir) -> str:
    """The service instances' shared subscription group: random, made once, kept beside the client bundles."""
    path = bdir.root / "clients" / "share-group"
    with bdir.locked():
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_file(path, "sharing-" + secrets.token_hex(16) + "\n", 0o600)
        return path.read_text(encoding="utf-8").strip()


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("provision", help="create unique credentials, certificates and configs")
    ps = p.add_subparsers(dest="provision_cmd", metavar="WHAT", required=True)

    b = ps.add_parser("broker", help="new broker: CA, server cert, mosquitto.conf, passwd, ACL")
    b.add_argument("--out", required=True, type=Path, help="new broker directory")
    b.add_argument("--hostname", action="append", default=[], help="broker DNS name (repeatable)")
    b.add_argument("--ip", action="append", default=[], help="broker IP address (repeatable)")
    b.add_argument("--port", type=int, default=8883)
    b.add_argument("--bind", default="0.0.0.0", help="listener address")
    b.add_argument("--ws-port", type=int, default=DEFAULT_WS_PORT,
                   help=f"TLS WebSockets listener for the browser app (default {DEFAULT_WS_PORT}; 0 = none)")
    b.add_argument("--files-dir", type=Path, default=None,
                   help="where mosquitto.conf will find ca.crt/server.*/passwd/acl (default: --out)")
    b.add_argument("--data-dir", type=Path, default=None,
                   help="Mosquitto persistence directory, for a standalone config (default: leave it "
                        "to the main mosquitto.conf that includes this one)")
    b.add_argument("--days", type=int, default=DEFAULT_DAYS)
    b.add_argument("--group", default=None,
                   help="group the broker runs as, to read passwd/acl/server.key (default: mosquitto "
                        "when run as root and it exists; '' for none)")
    b.add_argument("--no-client-certs", action="store_true",
                   help="do not require client certificates (passwords + TLS only)")
    b.set_defaults(func=_cmd_broker)

    for role in ("device", "owner"):
        q = ps.add_parser(role, help=f"add a {role}: unique MQTT password, client certificate, config")
        q.add_argument("--broker-dir", required=True, type=Path)
        q.add_argument("--id", required=True, help=f"{role} id ([a-z0-9_-])")
        q.add_argument("--out", type=Path, default=None, help="bundle directory (default BROKER/clients/ID)")
        q.add_argument("--mqtt-host", default=None, help="broker host as the client reaches it")
        q.add_argument("--mqtt-port", type=int, default=None)
        q.add_argument("--rotate", action="store_true", help="issue new credentials for an existing id")
        q.add_argument("--days", type=int, default=DEFAULT_DAYS)
        if role == "device":
            q.add_argument("--owner", required=True)
            q.add_argument("--name", default="Front door")
            q.add_argument("--config-dir", default="/etc/doorbell", help="where the bundle will live on the Pi")
            q.add_argument("--s3-bucket", default="doorbell-clips")
            q.add_argument("--s3-endpoint", default=None)
            q.add_argument("--s3-region", default="us-east-1")
            q.add_argument("--s3-prefix-base", default="", help="prefix before devices/ID/")
            q.add_argument("--s3-access-key-id", default=None,
                           help="the device's S3 key id; its secret is read from $DOORBELL_S3_SECRET "
                                "(never from the command line, where `ps` would show it)")
            q.add_argument("--recipient", action="append", default=[], metavar="age1...",
                           help="a household member's (or the recovery) age public key the device "
                                "encrypts clips to (repeatable)")
            q.add_argument("--recipients-file", action="append", default=[], type=Path, metavar="FILE",
                           help="file of age1... recipients, one a line (doorbell owner keys writes one)")
            enc = q.add_mutually_exclusive_group()
            enc.add_argument("--encrypt", action="store_true", default=None,
                             help="require end-to-end encryption (the default whenever recipients are given; "
                                  "with this flag, missing recipients are an error)")
            enc.add_argument("--no-encrypt", dest="encrypt", action="store_false",
                             help="store clips in clear even though recipients are given (they leave the "
                                  "end-to-end boundary: the bucket operator can read them)")
            q.set_defaults(func=_cmd_device)
        else:
            q.add_argument("--config-dir", default="~/.config/doorbell")
            q.add_argument("--sharing-url", default="http://127.0.0.1:8080")
            q.set_defaults(func=_cmd_owner)

    lg = ps.add_parser("owner-login", help="add a further broker login for an owner (its browser app)",
                       description="Each of an owner's apps connected at the same time needs its own broker "
                                   "login (a session belongs to its login). The login OWNER.NAME has the owner's "
                                   "rights; consent still needs a linked signing key (docs/owner-app.md).")
    lg.add_argument("--broker-dir", required=True, type=Path)
    lg.add_argument("--owner", required=True)
    lg.add_argument("--name", default="web", help="the login's name after the dot (default: web)")
    lg.add_argument("--out", type=Path, default=None, help="bundle directory (default BROKER/clients/OWNER.NAME)")
    lg.add_argument("--ws-url", default=None, help="the broker's WebSockets URL as the browser reaches it")
    lg.add_argument("--rotate", action="store_true", help="issue a new password for an existing login")
    lg.set_defaults(func=_cmd_owner_login)

    s = ps.add_parser("service", help="add a service user: sharing-service, admin or ha (Home Assistant)")
    s.add_argument("--broker-dir", required=True, type=Path)
    s.add_argument("--id", required=True)
    s.add_argument("--role", choices=("service", "admin", "ha"), default="ha")
    s.add_argument("--out", type=Path, default=None)
    s.add_argument("--mqtt-host", default=None)
    s.add_argument("--mqtt-port", type=int, default=None)
    s.add_argument("--config-dir", default="/etc/doorbell")
    s.add_argument("--rotate", action="store_true")
    s.add_argument("--days", type=int, default=DEFAULT_DAYS)
    s.set_defaults(func=_cmd_service)

    r = ps.add_parser("remove", help="revoke an identity (password and ACL block)")
    r.add_argument("--broker-dir", required=True, type=Path)
    r.add_argument("--id", required=True)
    r.set_defaults(func=_cmd_remove)


def _fail(exc: Exception) -> int:
    print(f"doorbell provision: {exc}", file=sys.stderr)
    return 2


def _reload_hint(bdir: BrokerDir) -> str:
    return (f"broker files updated in {bdir.root}: copy passwd and acl to the broker and run "
            "`systemctl reload mosquitto`")


def _cmd_broker(args: argparse.Namespace) -> int:
    from doorbell.core.broker_acl import AclError
    hostnames = args.hostname or ([] if args.ip else ["localhost"])
    ips = args.ip or (["127.0.0.1"] if not args.hostname else [])
    try:
        bdir, ident = create_broker(args.out, hostnames=hostnames, ips=ips, port=args.port, bind=args.bind,
                                    files_dir=args.files_dir, data_dir=args.data_dir, days=args.days,
                                    require_client_cert=not args.no_client_certs, ws_port=args.ws_port or None,
                                    group=default_broker_group() if args.group is None else (args.group or None))
        out = bdir.client_dir(ident.name)
    except (ProvisionError, AclError, OSError) as exc:
        return _fail(exc)
    print(f"broker provisioned in {bdir.root}\n"
          f"  mosquitto config: {bdir.conf} (TLS {args.port}, client certs "
          f"{'optional' if args.no_client_certs else 'required'}, no anonymous)\n"
          + (f"  browser app: TLS WebSockets on {args.ws_port} (passwords over TLS; see docs/owner-app.md)\n"
             if args.ws_port else "") +
          f"  CA key: {bdir.ca_key} (mode 0600; keep offline once devices are issued)\n"
          f"  sharing service credentials: {out}/sharing.yaml\n"
          f"next: doorbell provision owner --broker-dir {bdir.root} --id OWNER")
    return 0


def _cmd_device(args: argparse.Namespace) -> int:
    import re

    from doorbell.core.broker_acl import AclError
    from doorbell.core.config import ConfigError
    from doorbell.core.protocol import ID_PATTERN
    if not re.match(ID_PATTERN, args.id):
        return _fail(ProvisionError(f"invalid device id {args.id!r}: must match {ID_PATTERN}"))
    bdir = BrokerDir(args.broker_dir)
    try:
        recipients = read_recipients(args.recipient, args.recipients_file)
        if args.encrypt is None:  # on by default: whenever the household's keys are known
            args.encrypt = bool(recipients)
        if args.encrypt and not recipients:
            raise ProvisionError("--encrypt needs the household's recipients: --recipient age1... or "
                                 "--recipients-file (doorbell owner keys writes one)")
        ident = add_identity(bdir, "device", args.id, owner=args.owner, rotate=args.rotate, days=args.days)
        out = args.out or bdir.client_dir(args.id)
        policy = device_bundle(bdir, ident, owner=args.owner, out=out, name=args.name,
                               mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, config_dir=args.config_dir,
                               bucket=args.s3_bucket, endpoint_url=args.s3_endpoint, region=args.s3_region,
                               prefix_base=args.s3_prefix_base, s3_access_key_id=args.s3_access_key_id,
                               s3_secret=os.environ.get("DOORBELL_S3_SECRET") or None,
                               recipients=recipients, encrypt=args.encrypt)
    except (ProvisionError, AclError, ConfigError, OSError) as exc:
        return _fail(exc)
    print(f"# device {args.id} (owner {args.owner}): bundle in {out}", file=sys.stderr)
    pub = (out / "device_ed25519.pub").read_text().strip()
    print(f"# device signing key (clip manifests): {pub}\n#   registered in {bdir.root / DEVICE_KEYS}; "
          "give it to the sharing service and to anyone who runs doorbell verify", file=sys.stderr)
    if args.encrypt:
        print(f"# encryption ON: clips sealed to {len(recipients)} recipient(s); register the device as sealing: "
              f"doorbell sharing device add {args.id} --owner {args.owner} --lat .. --lon .. --public-key {pub}",
              file=sys.stderr)
    else:
        print("# WARNING: encryption OFF: clips are stored in clear, readable by the bucket operator, and the "
              "sharing service indexes their times. Give the household's keys with --recipients-file "
              "(doorbell owner keys init writes one) to seal them", file=sys.stderr)
    print(f"# {_reload_hint(bdir)}", file=sys.stderr)
    print(f"# install on the Pi: sudo scripts/install-pi.sh --bundle {out}", file=sys.stderr)
    print("# S3 policy for this device's access key (AWS IAM / MinIO `mc admin policy create`), "
          f"also in {out}/s3-policy.json:", file=sys.stderr)
    print(json.dumps(policy, indent=2))
    return 0


def _cmd_owner(args: argparse.Namespace) -> int:
    from doorbell.core.broker_acl import AclError
    from doorbell.core.config import ConfigError
    bdir = BrokerDir(args.broker_dir)
    try:
        ident = add_identity(bdir, "owner", args.id, rotate=args.rotate, days=args.days)
        out = args.out or bdir.client_dir(args.id)
        path = owner_bundle(bdir, ident, out=out, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
                            config_dir=args.config_dir, sharing_url=args.sharing_url)
    except (ProvisionError, AclError, ConfigError, OSError) as exc:
        return _fail(exc)
    print(f"owner {args.id}: config {path}\n{_reload_hint(bdir)}")
    return 0


def _cmd_owner_login(args: argparse.Namespace) -> int:
    from doorbell.core.broker_acl import AclError, owner_login
    bdir = BrokerDir(args.broker_dir)
    try:
        login = owner_login(args.owner, args.name)
        ident = add_identity(bdir, "login", login, owner=args.owner, rotate=args.rotate)
        path = owner_login_bundle(bdir, ident, out=args.out or bdir.client_dir(login), ws_url=args.ws_url)
    except (ProvisionError, AclError, OSError) as exc:
        return _fail(exc)
    print(f"owner login {login}: {path}\n{_reload_hint(bdir)}")
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from doorbell.core.broker_acl import AclError, is_service_login
    from doorbell.core.config import ConfigError
    bdir = BrokerDir(args.broker_dir)
    # sharing-service-<n>: one login per instance of a scaled-out sharing service, with its rights
    role = "service" if is_service_login(args.id, SERVICE_USER) else args.role
    try:
        ident = add_identity(bdir, "service", args.id, rotate=args.rotate, days=args.days, service_role=role)
        out = args.out or bdir.client_dir(args.id)
        path = service_bundle(bdir, ident, out=out, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
                              config_dir=args.config_dir, role=role)
    except (ProvisionError, AclError, ConfigError, OSError) as exc:
        return _fail(exc)
    if role == "ha":
        print(f"Home Assistant user {args.id}: login and TLS files in {path.parent}\n"
              f"  enter them in HA's MQTT integration as {path} explains (docs/home-assistant.md)\n"
              f"{_reload_hint(bdir)}")
    else:
        print(f"{role} user {args.id}: credentials in {path}\n{_reload_hint(bdir)}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    bdir = BrokerDir(args.broker_dir)
    try:
        remove_identity(bdir, args.id)
    except ProvisionError as exc:
        return _fail(exc)
    print(f"{args.id} removed\n{_reload_hint(bdir)}")
    return 0


# --------------------------------------------------------------------------- shipped examples

EXAMPLE_DEVICES = {"frontdoor": "alice", "backdoor": "alice", "gate": "bob"}


def render_examples(files_dir: Path = Path("/etc/mosquitto/doorbell")) -> dict[str, str]:
    """The reference broker files shipped in config/mosquitto/ (a test keeps them in sync).

    They show what `doorbell provision broker` generates; a real broker uses the
    generated files, never these (they name example users and no passwords).
    """
    from doorbell.core.broker_acl import render_acl
    conf = render_mosquitto_conf(files_dir, 8883, "0.0.0.0", None)
    acl = render_acl(EXAMPLE_DEVICES, owners=sorted(set(EXAMPLE_DEVICES.values())), service_user=SERVICE_USER)
    return {"doorbell.conf.example": conf, "acl.example": acl}


if __name__ == "__main__":  # regenerate config/mosquitto/*.example
    out = Path(__file__).resolve().parents[2] / "config" / "mosquitto"
    for name, text in render_examples().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
