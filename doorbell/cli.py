"""``doorbell``: one console script, a subcommand per part of the product.

This module is the composition root of the installed tools: it sits above the
processes, the clients and operations, and registers each part's subcommands
from that part's light ``cli`` module (heavy imports happen inside the
handlers), so ``doorbell owner`` on a laptop never imports OpenCV and
``doorbell firmware`` on a Pi never imports FastAPI. The sandbox (the demo) is
above it and has its own script, ``doorbell-demo``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import cloud_agent.cli
import firmware.cli
import firmware.motion_cli
import sharing_service.cli
from doorbell.clients.agency import cli as agency_cli
from doorbell.clients.owner import cli as owner_cli
from doorbell.core import __version__
from doorbell.core.errors import DoorbellError
from doorbell.core.logsetup import setup_logging
from doorbell.ops import config_cli, doctor, provision, verify, wipe

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# Each part's ``register(subparsers)``, in the order ``doorbell --help`` lists them.
SUBCOMMANDS: tuple[Register, ...] = (
    config_cli.register,
    firmware.cli.register,
    firmware.motion_cli.register,
    cloud_agent.cli.register,
    sharing_service.cli.register,
    owner_cli.register,
    agency_cli.register,
    provision.register,
    doctor.register,
    wipe.register,
    verify.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doorbell", description="Consent-first Raspberry Pi video doorbell.")
    parser.add_argument("--version", action="version", version=f"doorbell {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        # A part's handler imports its heavy dependencies lazily; say which extra brings them.
        print(f"doorbell: this command needs the Python module {exc.name!r}, which is not installed; "
              "install the extra for this part, e.g. pip install 'doorbell[pi]', '[cloud]' or '[owner]'",
              file=sys.stderr)
        return 2
    except DoorbellError as exc:
        print(f"doorbell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
