"""``doorbell wipe``: erase this device's user data and credentials (ETSI EN 303 645 5.11-1).

Erases, after confirmation:

- every clip, snapshot, event, pending command and quarantined item in the spool,
  and the firmware's persisted state (spool ``state/``);
- the agent's state directory (upload bookkeeping);
- unless ``--keep-credentials``: the TLS private key and client certificate, and
  the secrets in the config file (``mqtt.password``, ``s3.access_key_id``,
  ``s3.secret_access_key``), so the device can no longer reach the broker or
  the bucket. The rest of the config stays, so re-provisioning is one step.

Small secret files are overwritten with zeros and fsynced before they are
unlinked. An SD card's wear levelling can keep old blocks, so for a device that
leaves your hands, also reflash the card (docs/security.md says why).

Copies outside the device cannot be erased from here: the command prints what
to run for the bucket prefix and the broker's retained messages.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from doorbell.core.bucket import device_prefix

if TYPE_CHECKING:
    from doorbell.core.config import DoorbellConfig

SECRET_KEYS = (("mqtt", "password"), ("s3", "access_key_id"), ("s3", "secret_access_key"))


@dataclass
class WipePlan:
    """What a wipe removes; built first so ``--dry-run`` and the prompt can show it."""

    trees: list[Path] = field(default_factory=list)        # directories whose contents go
    secret_files: list[Path] = field(default_factory=list)  # overwritten, then unlinked
    config_file: Path | None = None                         # secrets stripped from it
    config_secrets: list[str] = field(default_factory=list)

    def count(self) -> tuple[int, int]:
        """(files, bytes) that would be removed."""
        files = size = 0
        for tree in self.trees:
            for dirpath, _dirs, names in os.walk(tree):
                for n in names:
                    try:
                        size += os.lstat(os.path.join(dirpath, n)).st_size
                        files += 1
                    except OSError:
                        pass
        for f in self.secret_files:
            if f.exists():
                files += 1
                size += f.stat().st_size
        return files, size


def plan_wipe(cfg: "DoorbellConfig", config_path: Path, keep_credentials: bool = False) -> WipePlan:
    import yaml
    plan = WipePlan()
    for d in (Path(cfg.spool.dir), Path(cfg.agent.state_dir)):
        if d.is_dir():
            plan.trees.append(d)
    if not keep_credentials:
        tls = cfg.mqtt.tls
        for f in (tls.key_file, tls.cert_file):
            if f is not None and Path(f).expanduser().is_file():
                plan.secret_files.append(Path(f).expanduser())
        data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        present = [f"{s}.{k}" for s, k in SECRET_KEYS if isinstance(data.get(s), dict) and k in data[s]]
        if present:
            plan.config_file = config_path
            plan.config_secrets = present
    return plan


def _shred(path: Path) -> None:
    """Overwrite with zeros, fsync, unlink: best effort against casual recovery of a small secret."""
    try:
        size = path.stat().st_size
        with open(path, "r+b", buffering=0) as fh:
            fh.write(b"\0" * size)
            os.fsync(fh.fileno())
    except OSError:
        pass
    path.unlink(missing_ok=True)  # raises if the directory is not ours: reported, not hidden


def _empty_tree(root: Path) -> None:
    """Remove everything inside ``root`` but keep ``root`` itself (the services' StateDirectory)."""
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink(missing_ok=True)


def _strip_secrets(path: Path) -> None:
    """Rewrite the config without its secrets (same mode, atomic)."""
    import yaml

    from doorbell.ops.provision import write_file
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for section, key in SECRET_KEYS:
        if isinstance(data.get(section), dict):
            data[section].pop(key, None)
    header = ("# Credentials erased by `doorbell wipe`; re-provision with `doorbell provision device`\n"
              "# and install the new bundle (scripts/install-pi.sh --bundle DIR).\n")
    st = path.stat()
    write_file(path, header + yaml.safe_dump(data, sort_keys=False), st.st_mode & 0o777)
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid)  # keep the service user as owner


def execute(plan: WipePlan) -> list[str]:
    """Carry out the plan; returns what could not be erased (each with the reason)."""
    errors: list[str] = []

    def attempt(what: str, fn, *args) -> None:
        try:
            fn(*args)
        except OSError as exc:
            errors.append(f"{what}: {exc.strerror or exc}")

    for tree in plan.trees:
        attempt(f"erase {tree}", _empty_tree, tree)
    for f in plan.secret_files:
        attempt(f"delete {f}", _shred, f)
    if plan.config_file is not None:
        attempt(f"remove secrets from {plan.config_file}", _strip_secrets, plan.config_file)
    return errors


def cloud_instructions(cfg: "DoorbellConfig") -> str:
    """What the owner (or operator) runs to erase the copies this device cannot reach."""
    s3, dev = cfg.s3, cfg.device.id
    endpoint = f" --endpoint-url {s3.endpoint_url}" if s3.endpoint_url else ""
    tls = ""
    if cfg.mqtt.tls.enabled:
        tls = f" -p {cfg.mqtt.port} --cafile {cfg.mqtt.tls.ca_file}"
    else:
        tls = f" -p {cfg.mqtt.port}"
    topics = [f"doorbell/v1/devices/{dev}/status", f"doorbell/v1/devices/{dev}/snapshot",
              f"{cfg.agent.home_assistant.discovery_prefix}/device/{dev}/config"]
    lines = [
        "Copies outside this device (this command cannot erase them):",
        f"  1. Clips in the bucket, under s3://{s3.bucket}/{device_prefix(s3.prefix, dev)} "
        "— the bucket operator (or you, with an",
        "     account allowed to delete there; this device's own key cannot) runs:",
        f"       aws s3 rm --recursive s3://{s3.bucket}/{device_prefix(s3.prefix, dev)}{endpoint}",
        "     Object-locked or versioned buckets also need the old versions removed once the lock allows it.",
        "  2. Retained messages on the broker (last snapshot, status, Home Assistant discovery), as an",
        "     account allowed to write them:",
    ]
    lines += [f"       mosquitto_pub -h {cfg.mqtt.host}{tls} -u ADMIN -P ... -r -n -t {t}" for t in topics]
    lines += [
        "  3. Revoke this device's broker login (operator): doorbell provision remove --broker-dir DIR "
        f"--id {dev}; systemctl reload mosquitto",
        "  4. Clips already shared with an agency under a grant: revoke the grant from your owner app",
        "     (doorbell owner ...); the audit log keeps the record that they were shared, not the video.",
    ]
    return "\n".join(lines) + "\n"


def _services_running() -> list[str]:
    if not shutil.which("systemctl"):
        return []
    running = []
    for unit in ("doorbell-firmware.service", "doorbell-agent.service"):
        try:
            if subprocess.run(["systemctl", "is-active", "--quiet", unit], timeout=5).returncode == 0:
                running.append(unit)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return running


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("wipe", help="erase local clips, events and keys (and say how to erase cloud copies)")
    p.add_argument("--config", "-c", default="/etc/doorbell/device.yaml")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="show what would be erased")
    p.add_argument("--keep-credentials", action="store_true",
                   help="erase user data only; keep the TLS key and broker/bucket secrets")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from doorbell.core.config import ConfigError, load_config
    stdin = sys.stdin
    path = Path(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"doorbell wipe: {exc}", file=sys.stderr)
        return 2
    running = _services_running()
    if running and not args.dry_run:
        print(f"doorbell wipe: {', '.join(running)} running; they would write new data during the wipe.\n"
              f"  stop them first: sudo systemctl stop {' '.join(running)}", file=sys.stderr)
        return 2
    plan = plan_wipe(cfg, path, args.keep_credentials)
    files, size = plan.count()
    print(f"doorbell wipe for device {cfg.device.id}: {files} file(s), {size / 2**20:.1f} MiB")
    for t in plan.trees:
        print(f"  erase everything in {t}")
    for f in plan.secret_files:
        print(f"  overwrite and delete {f}")
    if plan.config_file:
        print(f"  remove {', '.join(plan.config_secrets)} from {plan.config_file}")
    if args.dry_run:
        print("dry run: nothing erased")
        print(cloud_instructions(cfg), end="")
        return 0
    if not args.yes:
        print(f"This cannot be undone. Type the device id ({cfg.device.id}) to confirm: ", end="", flush=True)
        answer = stdin.readline().strip()
        if answer != cfg.device.id:
            print("doorbell wipe: not confirmed; nothing erased", file=sys.stderr)
            return 1
    errors = execute(plan)
    if errors:
        print("doorbell wipe: could not erase everything:\n  " + "\n  ".join(errors) +
              "\n  run it as root (sudo), which can write /etc/doorbell", file=sys.stderr)
    else:
        print(f"erased {files} file(s), {size / 2**20:.1f} MiB on this device")
    print(cloud_instructions(cfg), end="")
    return 1 if errors else 0
