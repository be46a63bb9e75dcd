"""``doorbell sharing ...``: run the sharing service and administer its registry.

Light on purpose: FastAPI, SQLAlchemy and boto3 are imported inside handlers.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from doorbell.core.config import DoorbellConfig

if TYPE_CHECKING:
    from sharing_service.core import SharingCore


def register(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", help="YAML config file (sharing, mqtt, s3 sections)")
    p = subs.add_parser("sharing", help="sharing service: agency API, owner bridge, registry admin")
    ss = p.add_subparsers(dest="sharing_cmd", metavar="ACTION", required=True)

    s = ss.add_parser("serve", parents=[common], help="run the service (HTTP API + MQTT owner bridge)")
    s.add_argument("--no-mqtt", action="store_true", help="HTTP only (no owner bridge); for API development")
    s.add_argument("--sweep-interval", type=float, default=None, metavar="S",
                   help="seconds between expiry sweeps (default: sharing.sweep_interval_s, 30)")
    s.set_defaults(func=_serve)

    m = ss.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    m.set_defaults(func=_migrate)

    o = ss.add_parser("openapi", parents=[common], help="print the agency API's OpenAPI spec (JSON)")
    o.set_defaults(func=_openapi)

    own = ss.add_parser("owner", help="enrol and list owners").add_subparsers(dest="owner_cmd", required=True)
    a = own.add_parser("add", parents=[common], help="enrol an owner with its Ed25519 public key")
    a.add_argument("owner_id")
    a.add_argument("--public-key", required=True, help="ed25519:<base64url> (doorbell owner keys init prints it)")
    a.set_defaults(func=_owner_add)
    k = own.add_parser("set-key", parents=[common], help="rotate an owner's public key (audited)")
    k.add_argument("owner_id")
    k.add_argument("--public-key", required=True)
    k.set_defaults(func=_owner_set_key)
    ls = own.add_parser("list", parents=[common], help="list owners")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_owner_list)

    dev = ss.add_parser("device", help="enrol and list devices").add_subparsers(dest="device_cmd", required=True)
    a = dev.add_parser("add", parents=[common], help="enrol a device with its coarse location")
    a.add_argument("device_id")
    a.add_argument("--owner", required=True)
    a.add_argument("--lat", type=float, required=True)
    a.add_argument("--lon", type=float, required=True)
    a.add_argument("--public-key", metavar="ED25519",
                   help="the device's manifest key (ed25519:..., from device-keys.json): the device seals its "
                        "clips; agencies check shared clips against this key")
    a.set_defaults(func=_device_add)
    ls = dev.add_parser("list", parents=[common], help="list devices")
    ls.add_argument("--owner")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_device_list)

    ag = ss.add_parser("agency", help="enrol and list agencies").add_subparsers(dest="agency_cmd", required=True)
    a = ag.add_parser("add", parents=[common], help="enrol an agency; prints its API key once")
    a.add_argument("name")
    a.add_argument("--rate-per-min", type=int, help="own rate limit (default: sharing.agency_rate_per_min)")
    a.add_argument("--age-recipient", metavar="AGE1",
                   help="the agency's age recipient (age1..., from `doorbell agency keys init`): approvals of "
                        "sealed clips re-wrap the clips' keys to it; without one, owners of sealed devices are "
                        "not asked")
    a.set_defaults(func=_agency_add)
    k = ag.add_parser("set-recipient", parents=[common], help="register or rotate an agency's age recipient")
    k.add_argument("name")
    k.add_argument("age_recipient")
    k.set_defaults(func=_agency_recipient)
    ls = ag.add_parser("list", parents=[common], help="list agencies (never their keys)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_agency_list)
    for name, flag in (("disable", True), ("enable", False)):
        d = ag.add_parser(name, parents=[common], help=f"{name} an agency's API key")
        d.add_argument("name")
        d.set_defaults(func=_agency_disable, disabled=flag)

    au = ss.add_parser("audit", help="audit log").add_subparsers(dest="audit_cmd", required=True)
    v = au.add_parser("verify", parents=[common], help="recompute the whole hash chain")
    v.set_defaults(func=_audit_verify)

    sw = ss.add_parser("sweep", parents=[common], help="expire unanswered requests and lapsed grants now")
    sw.set_defaults(func=_sweep)


def _cfg(args: argparse.Namespace) -> DoorbellConfig:
    from doorbell.core.config import load_config

    return load_config(args.config)


def _core(args: argparse.Namespace) -> SharingCore:
    from sharing_service.context import ServiceContext
    from sharing_service.core import SharingCore
    from sharing_service.db import Database

    cfg = _cfg(args)
    db = Database(cfg.sharing.database_url)
    db.migrate()
    return SharingCore(ServiceContext(db, cfg.sharing))


def _run(fn: Callable[[], object]) -> int:
    from sharing_service.context import Refused

    try:
        fn()
        return 0
    except Refused as exc:
        print(f"doorbell sharing: {exc.message}", file=sys.stderr)
        return 1


def _table(rows: list[dict[str, Any]], cols: list[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


def _serve(args: argparse.Namespace) -> int:
    from doorbell.core.logsetup import setup_logging
    from sharing_service.service import SharingService

    cfg = _cfg(args)
    setup_logging(getattr(args, "verbose", False), cfg.logging.level)
    if not args.no_mqtt:
        cfg.require("mqtt.username", "mqtt.password")
    SharingService(cfg, mqtt=not args.no_mqtt, sweep_interval_s=args.sweep_interval).serve()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from sharing_service.db import Database

    db = Database(_cfg(args).sharing.database_url)
    db.migrate()
    print(f"schema at revision {db.current_revision()}")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    print(json.dumps(openapi_spec(), indent=2))
    return 0


def openapi_spec() -> dict[str, Any]:
    """The agency API's spec, built without a database (routes only)."""
    from doorbell.core.config import SharingSection
    from sharing_service.api import create_app
    from sharing_service.context import ServiceContext
    from sharing_service.core import SharingCore

    return create_app(SharingCore(ServiceContext(None, SharingSection()))).openapi()  # type: ignore[arg-type]


def _owner_add(args: argparse.Namespace) -> int:
    def act() -> None:
        _core(args).registry.add_owner(args.owner_id, args.public_key)
        print(f"owner {args.owner_id} enrolled")

    return _run(act)


def _owner_set_key(args: argparse.Namespace) -> int:
    def act() -> None:
        _core(args).registry.set_owner_key(args.owner_id, args.public_key)
        print(f"owner {args.owner_id}: key replaced")

    return _run(act)


def _owner_list(args: argparse.Namespace) -> int:
    _table(_core(args).registry.list_owners(), ["id", "devices", "public_key"], args.json)
    return 0


def _device_add(args: argparse.Namespace) -> int:
    def act() -> None:
        _core(args).registry.add_device(args.device_id, args.owner, args.lat, args.lon, args.public_key)
        print(f"device {args.device_id} enrolled for {args.owner}")

    return _run(act)


def _device_list(args: argparse.Namespace) -> int:
    _table(_core(args).registry.list_devices(args.owner), ["id", "owner_id", "lat", "lon"], args.json)
    return 0


def _agency_add(args: argparse.Namespace) -> int:
    def go() -> None:
        agency_id, key = _core(args).registry.add_agency(args.name, args.rate_per_min, args.age_recipient)
        print(f"agency {args.name!r} enrolled (id {agency_id}). API key (shown once, store it now):")
        print(key)
    return _run(go)


def _agency_recipient(args: argparse.Namespace) -> int:
    def go() -> None:
        _core(args).registry.set_agency_recipient(args.name, args.age_recipient)
        print(f"agency {args.name!r}: approvals of sealed clips now re-wrap to {args.age_recipient}")
    return _run(go)


def _agency_list(args: argparse.Namespace) -> int:
    _table(_core(args).registry.list_agencies(), ["id", "name", "key_id", "rate_per_min", "disabled"], args.json)
    return 0


def _agency_disable(args: argparse.Namespace) -> int:
    def act() -> None:
        _core(args).registry.set_agency_disabled(args.name, args.disabled)
        print(f"agency {args.name!r} {'disabled' if args.disabled else 'enabled'}")

    return _run(act)


def _audit_verify(args: argparse.Namespace) -> int:
    report = _core(args).registry.verify_audit()
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def _sweep(args: argparse.Namespace) -> int:
    print(f"{_core(args).sweeper.sweep()} item(s) expired")
    return 0
