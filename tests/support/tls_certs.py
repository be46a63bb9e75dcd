"""Throwaway certificates for loopback TLS tests: a self-signed one, or a small private PKI."""
from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def self_signed(directory: Path, cn: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write ``cert.pem`` (its own CA, SAN 127.0.0.1) and ``key.pem`` into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass(frozen=True)
class PrivatePki:
    """A private CA, a broker certificate it signed, and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def private_pki(directory: Path, *, ips: Sequence[str] = ("127.0.0.1",), dns: Sequence[str] = (),
                cn: str = "Test CA") -> PrivatePki:
    """A CA plus broker and client certificates, made the way ``doorbell provision`` makes them."""
    from doorbell.ops import provision

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = provision.make_ca(cn)
    s_key, s_cert = provision.issue_cert(ca_key, ca_cert, "broker", server=True, dns=list(dns), ips=list(ips))
    c_key, c_cert = provision.issue_cert(ca_key, ca_cert, "client", server=False)
    out = PrivatePki(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                     directory / "client.crt", directory / "client.key")
    out.ca.write_bytes(provision.cert_pem(ca_cert))
    out.server_cert.write_bytes(provision.cert_pem(s_cert))
    out.server_key.write_bytes(provision.key_pem(s_key))
    out.client_cert.write_bytes(provision.cert_pem(c_cert))
    out.client_key.write_bytes(provision.key_pem(c_key))
    return out
