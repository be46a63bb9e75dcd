"""``doorbell owner web``: serve the browser app (doorbell/clients/web/dist) on loopback.

The app is static files; it talks to the broker directly over MQTT on TLS
WebSockets, so this server only hands out files plus a ``config.json`` with the
broker's WebSockets URL and the owner id (never the password). It binds
127.0.0.1 by default: a page served to other machines from here would be a
page they must trust with their consent key (docs/owner-app.md, "Where the
code comes from").
"""
from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from doorbell.clients.owner.app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OwnerError, load_owner_config
from doorbell.core.errors import DoorbellError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
DEFAULT_WS_PORT = 8884
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")


class WebAppMissing(DoorbellError):
    """The built app is not there (a source checkout that was never built)."""


def dist_dir() -> Path:
    """Where the built app lives (package data of doorbell.clients.web)."""
    path = Path(str(resources.files("doorbell.clients.web"))) / "dist"
    if not (path / "index.html").is_file():
        raise WebAppMissing(f"the web app is not built ({path} has no index.html): run scripts/bootstrap.sh, "
                            "or `npm ci && npm run build` in doorbell/clients/web")
    return path


def make_server(host: str, port: int, app_config: dict[str, Any], root: Path | None = None) -> ThreadingHTTPServer:
    """A threaded HTTP server for the app's files and ``/config.json``; call serve_forever()."""
    base = (root or dist_dir()).resolve()
    files = {p.relative_to(base).as_posix(): p for p in base.rglob("*") if p.is_file()}
    config_body = json.dumps(app_config).encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "doorbell-owner-web"
        sys_version = ""

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, ctype: str, cache: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            for k, v in SECURITY_HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
            if path == "config.json":
                return self._send(200, config_body, "application/json", "no-store")
            target = files.get(path)  # only files that exist in dist: no path walking
            if target is None:
                return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", "no-store")
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype.endswith("javascript"):
                ctype += "; charset=utf-8"
            self._send(200, target.read_bytes(), ctype, "no-cache")

        do_HEAD = do_GET

    return _QuietServer((host, port), Handler)


class _QuietServer(ThreadingHTTPServer):
    """A browser that closes a tab mid-response is normal: log it, never print a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):  # BrokenPipeError, ConnectionResetError, ...
            log.debug("%s went away mid-response: %s", client_address, exc)
            return
        log.exception("error while answering %s", client_address)


class WebServer:
    """The app server in a background thread (tests, the demo, benchmarks)."""

    def __init__(self, app_config: dict[str, Any], host: str = "127.0.0.1", port: int = 0,
                 root: Path | None = None):
        self.httpd = make_server(host, port, app_config, root)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="owner-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/" if isinstance(host, str) else f"http://{host.decode()}:{port}/"

    def start(self) -> "WebServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def broker_ws_url(cfg: Any, override: str | None) -> str:
    if override:
        return override
    m = cfg.mqtt
    scheme = "wss" if m.tls.enabled else "ws"
    return f"{scheme}://{m.host}:{DEFAULT_WS_PORT}/"


def register(osub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    w = osub.add_parser("web", parents=[common], help="open the app in your browser (served on this machine)",
                        description="Serve the owner's browser app on 127.0.0.1 and print its address. "
                                    "The browser connects to your broker over TLS WebSockets.")
    w.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    w.add_argument("--broker-url", metavar="URL",
                   help=f"the broker's WebSockets URL (default wss://<mqtt.host>:{DEFAULT_WS_PORT}/)")
    w.set_defaults(func=_cmd_web)


def _cmd_web(args: argparse.Namespace) -> int:
    try:
        cfg = load_owner_config(args.config)
        url = broker_ws_url(cfg, args.broker_url)
        if not url.startswith(("wss://", "ws://")):
            raise OwnerError("--broker-url must start with wss:// (or ws:// on loopback)", EXIT_USAGE)
        # the app's own broker login, as `doorbell provision owner-login` names it by default (a prefill)
        server = WebServer({"broker_url": url, "owner_id": cfg.owner.owner_id, "login": f"{cfg.owner.owner_id}.web",
                            "sharing_url": cfg.owner.sharing_url},
                           args.host, args.port)
    except WebAppMissing as exc:
        print(f"doorbell owner: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OwnerError as exc:
        print(f"doorbell owner: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"doorbell owner: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving the app beyond this machine (%s): see docs/owner-app.md before doing so", args.host)
    print(f"Your doorbell app: {server.url}  (broker {url}; Ctrl-C to stop)", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return EXIT_OK
