"""``doorbell``: one console script, a subcommand per part of the product.

Each part registers its own subcommands from a light ``cli`` module (heavy
imports happen inside the handlers), so ``doorbell owner`` on a laptop never
imports OpenCV and ``doorbell firmware`` on a Pi never imports FastAPI.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .config import ConfigError

# (subcommand, module providing register(subparsers), extra that provides its deps)
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("config", "doorbell.config_cli", ""),
    ("firmware", "firmware.cli", "pi"),
    ("motion", "firmware.motion_cli", "pi"),
    ("agent", "cloud_agent.cli", "pi"),
    ("sharing", "sharing_service.cli", "cloud"),
    ("owner", "sharing_service.owner_cli", "owner"),
    ("agency", "sharing_service.agency_cli", "owner"),
    ("demo", "doorbell.demo", "all"),
    ("provision", "doorbell.provision", ""),
    ("doctor", "doorbell.doctor", "pi"),
    ("wipe", "doorbell.wipe", ""),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doorbell", description="Consent-first Raspberry Pi video doorbell.")
    parser.add_argument("--version", action="version", version=f"doorbell {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, extra in SUBCOMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
                continue  # that part is not built (yet) in this installation
            p = subs.add_parser(name, help=f"(unavailable: {exc.name} missing; pip install 'doorbell[{extra}]')")
            p.set_defaults(func=lambda _a, e=exc, x=extra: _missing(e, x))
            continue
        mod.register(subs)
    return parser


def _missing(exc: ModuleNotFoundError, extra: str) -> int:
    print(f"doorbell: this command needs {exc.name}; install it with: pip install 'doorbell[{extra}]'", file=sys.stderr)
    return 2


def setup_logging(verbose: bool = False, level: str | None = None) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level or "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"doorbell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
