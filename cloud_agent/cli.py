"""``doorbell agent run|status``: light at import time (boto3/paho load inside the handlers)."""
from __future__ import annotations

import argparse
import json
import logging
import sys


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("agent", help="the cloud agent: spool -> S3 + MQTT (runs on the Pi)")
    asub = p.add_subparsers(dest="agent_command", metavar="ACTION")
    run = asub.add_parser("run", help="run the agent until SIGTERM (systemd: doorbell-agent.service)")
    run.add_argument("--config", "-c", required=True, help="YAML config file")
    run.set_defaults(func=_run)
    st = asub.add_parser("status", help="connection state, queue depth and backlog progress, last upload/error")
    st.add_argument("--config", "-c", required=True, help="YAML config file")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    from doorbell.core.config import load_config

    cfg = load_config(args.config)
    # Fail at start-up, naming the key, rather than retrying forever without broker credentials.
    cfg.require("mqtt.username", "mqtt.password")
    if cfg.s3.access_key_id is None or cfg.s3.secret_access_key is None:
        # Rings still reach the owner; clips wait safely in the spool until the operator adds a key.
        logging.getLogger("cloud_agent").warning(
            "%s: no bucket credentials (s3.access_key_id / s3.secret_access_key): clips stay queued "
            "in the spool until they are set", cfg.source)
    if not args.verbose:
        logging.getLogger().setLevel(cfg.logging.level)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("s3transfer").setLevel(logging.WARNING)
    logging.getLogger("cloud_agent.paho").setLevel(logging.WARNING)
    from cloud_agent.memory import disable_thp, limit_arenas

    limit_arenas(2)  # before any thread exists
    disable_thp()  # no 2 MiB rounding of large buffers (see doorbell.core.memory)
    from cloud_agent.agent import Agent

    return Agent(cfg).run()


def _status(args: argparse.Namespace) -> int:
    from cloud_agent.status import queue_depth, read_status, render_status
    from doorbell.core.config import load_config

    cfg = load_config(args.config)
    status = read_status(cfg.agent.state_dir)
    queue = queue_depth(cfg.spool.dir, cfg.agent.state_dir)
    if args.json:
        json.dump({"status": status, "queue": queue}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(render_status(status, queue))
    return 0
