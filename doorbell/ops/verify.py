"""``doorbell verify``: check a clip against its device-signed manifest, offline.

    doorbell verify clip.mp4 [snapshot.jpg ...] --manifest clip.manifest.json \\
        (--device-key ed25519:... | --device-key-file device.pub) [--json]

Passes (exit 0) only if the manifest's Ed25519 signature verifies against the
device key the verifier names (taken from the device's registration, never
from the manifest itself) and every FILE is, byte for byte, one of the files
the manifest lists: the decrypted video, snapshot or metadata (plaintext) or
the age file the device stored (ciphertext). Anything else exits 1 and says
what failed. Nothing is sent anywhere: an agency or a court can run this
without trusting the cloud.

Without ``--manifest``, a manifest is looked for next to the first FILE:
``FILE.manifest.json``, then ``<FILE without its last suffix>.manifest.json``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

AGE_MAGIC = b"age-encryption.org/"


def register(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("verify", help="check a decrypted clip against its device-signed manifest (offline)",
                        description=(__doc__ or "").split("\n\n")[2])
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="decrypted clip, snapshot or metadata (or the stored .age file)")
    p.add_argument("--manifest", "-m", type=Path, help="the clip's manifest (default: found next to FILE)")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--device-key", metavar="ed25519:KEY", help="the device's registered public key")
    key.add_argument("--device-key-file", type=Path, metavar="F",
                     help="file holding the device's public key (ed25519:... text or PEM)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd)


def find_manifest(path: Path) -> Path | None:
    for cand in (path.with_name(path.name + ".manifest.json"), path.with_name(path.stem + ".manifest.json")):
        if cand.is_file():
            return cand
    return None


def load_device_key(text: str | None, path: Path | None) -> str:
    """The device public key as ``ed25519:...``, from the flag or a file (ed25519: text, PEM public or private)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from doorbell.core.signing import SignatureError, parse_public_key, public_key_text
    if text is not None:
        return public_key_text(parse_public_key(text.strip()))
    assert path is not None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read device key file {path}: {exc.strerror}") from None
    if data.strip().startswith(b"ed25519:"):
        return public_key_text(parse_public_key(data.decode("ascii", "replace").strip()))
    try:
        if b"PRIVATE KEY" in data:
            key: Any = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise SignatureError(f"{path}: not an ed25519:... key or a PEM key") from None
    if not isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
        raise SignatureError(f"{path}: not an Ed25519 key")
    return public_key_text(key)


def verify(files: list[Path], manifest_path: Path | None, device_key: str) -> dict[str, Any]:
    """The whole check as a JSON-able report; ``report["ok"]`` is the verdict."""
    from doorbell.core.errors import DoorbellError
    from doorbell.core.manifest import load_manifest, match_file, verify_manifest

    report: dict[str, Any] = {"ok": False, "device_key": device_key, "manifest": None, "signature": None,
                              "files": []}
    if manifest_path is None:
        manifest_path = find_manifest(files[0])
        if manifest_path is None:
            report["error"] = (f"no --manifest given and none next to {files[0]} "
                               f"({files[0].name}.manifest.json or {files[0].stem}.manifest.json)")
            return report
    report["manifest_path"] = str(manifest_path)
    try:
        manifest = load_manifest(manifest_path.read_bytes())
    except OSError as exc:
        report["error"] = f"cannot read manifest {manifest_path}: {exc.strerror}"
        return report
    except DoorbellError as exc:
        report["error"] = f"{manifest_path}: {exc}"
        return report
    report["manifest"] = manifest.fields()
    try:
        verify_manifest(manifest, device_key)
        report["signature"] = {"ok": True, "reason": "signed by the given device key"}
    except DoorbellError as exc:
        report["signature"] = {"ok": False, "reason": str(exc)}
    for path in files:
        entry: dict[str, Any] = {"path": str(path), "ok": False}
        try:
            with open(path, "rb") as fh:
                magic = fh.read(len(AGE_MAGIC))
                fh.seek(0)
                m = match_file(manifest, fh)
        except OSError as exc:
            entry["reason"] = f"cannot read: {exc.strerror}"
            report["files"].append(entry)
            continue
        entry.update(sha256=m.sha256, size=m.size, kind=m.kind, form=m.form, ok=m.ok)
        if m.ok:
            entry["reason"] = f"is the clip's {m.kind} ({m.form}) as the device recorded it"
        elif magic == AGE_MAGIC:
            entry["reason"] = ("an age file that is not the one the device stored (a re-wrapped header changes "
                               "it): decrypt it first, e.g. age -d -i key.txt, and verify the plaintext")
        else:
            entry["reason"] = ("matches no file in the manifest: altered, truncated, or from another clip")
        report["files"].append(entry)
    report["ok"] = bool(report["signature"]["ok"] and all(f["ok"] for f in report["files"]))
    for f in report["files"]:
        if not f["ok"]:
            log.warning("verify: %s: %s", f["path"], f["reason"])
    if not report["signature"]["ok"]:
        log.warning("verify: %s: %s", manifest_path, report["signature"]["reason"])
    return report


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def render(report: dict[str, Any]) -> str:
    mark = "OK" if report["ok"] else "FAILED"
    lines = [f"doorbell verify: {mark}"]
    if report.get("error"):
        lines.append(f"  error      {report['error']}")
    m = report.get("manifest")
    if m:
        lines.append(f"  clip       {m['clip_id']} from device {m['device_id']} ({m['trigger']}, "
                     f"pre-roll {m['pre_roll_ms'] / 1000:g} s)")
        lines.append(f"  recorded   {_when(m['started_at_ms'])} to {_when(m['ended_at_ms'])} "
                     f"({(m['ended_at_ms'] - m['started_at_ms']) / 1000:g} s), trigger at {_when(m['trigger_at_ms'])}")
    sig = report.get("signature")
    if sig:
        lines.append(f"  signature  {'ok' if sig['ok'] else 'FAILED'}: {sig['reason']} ({report['device_key']})")
    for f in report["files"]:
        lines.append(f"  {'ok' if f['ok'] else 'FAILED':<9}  {f['path']}: {f['reason']}")
        if "sha256" in f:
            lines.append(f"             SHA-256 {f['sha256']}, {f['size']} bytes")
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    from doorbell.core.errors import DoorbellError
    try:
        key = load_device_key(args.device_key, args.device_key_file)
    except DoorbellError as exc:
        print(f"doorbell verify: {exc}", file=sys.stderr)
        return 1
    report = verify(args.files, args.manifest, key)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0 if report["ok"] else 1
