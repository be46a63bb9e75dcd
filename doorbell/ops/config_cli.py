"""``doorbell config check``: validate a config file and show the effective values."""
from __future__ import annotations

import argparse
import sys

from doorbell.core.config import ConfigError, dump_yaml, load_config


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("config", help="validate and show configuration")
    csub = p.add_subparsers(dest="config_cmd", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate a config file; print it with secrets redacted")
    check.add_argument("--config", "-c", required=True, help="YAML config file")
    check.add_argument("--require", action="append", default=[], metavar="KEY",
                       help="also require this secret/key (e.g. mqtt.password); repeatable")
    check.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        cfg.require(*args.require)
    except ConfigError as exc:
        print(f"doorbell: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        sys.stdout.write(f"# {args.config}: valid (secrets redacted)\n")
        sys.stdout.write(dump_yaml(cfg))
    return 0
