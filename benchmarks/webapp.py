"""The owner's web app in Debian's headless chromium (Playwright), on loopback.

    .venv/bin/python benchmarks/webapp.py [--quick] [--json PATH]

- ring shown: a ring event published by the device's account (what the agent sends) ->
  drawn in the open app (MQTT over TLS WebSockets through a real Mosquitto), p50/p99 over
  ``--rings`` rings, one at a time; both ends read the same system clock (the app stamps
  ``performance.timeOrigin + performance.now()`` after the DOM update);
- app shell size: every file the shell needs (index.html, app.js, app.css, manifest, icon,
  service worker), each gzipped at level 9, summed; the age chunk (sealed.js, loaded when a
  sealed clip is first opened) is reported on its own;
- cold load: a fresh browser context (empty cache) -> the first screen rendered (the sign-in
  form in the DOM), and the browser's first-contentful-paint, over ``--loads`` loads.

Imports the sandbox and the app server, never tests/.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHELL = ["index.html", "app.js", "app.css", "manifest.webmanifest", "icon.svg", "sw.js"]
LAZY = ["sealed.js"]  # the age code, loaded when a sealed clip is first opened (not part of the shell)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def shell_size() -> dict[str, Any]:
    from doorbell.clients.owner.web import dist_dir

    d = dist_dir()
    files = {f: len(gzip.compress((d / f).read_bytes(), 9)) for f in SHELL}
    lazy = {f: len(gzip.compress((d / f).read_bytes(), 9)) for f in LAZY}
    return {"files_gz": files, "total_gz_bytes": sum(files.values()),
            "total_raw_bytes": sum((d / f).stat().st_size for f in SHELL), "lazy_gz": lazy}


def tls_files(d: Path) -> tuple[Any, str]:
    """A CA and a 127.0.0.1 server certificate (doorbell.ops.provision's own helpers)."""
    from cryptography.hazmat.primitives import serialization

    from doorbell.ops.provision import cert_pem, issue_cert, key_pem, make_ca
    from doorbell.sandbox.embedded import TlsFiles

    ca_key, ca_cert = make_ca("bench CA")
    key, cert = issue_cert(ca_key, ca_cert, "127.0.0.1", server=True, ips=["127.0.0.1"])
    (d / "ca.crt").write_bytes(cert_pem(ca_cert))
    (d / "server.crt").write_bytes(cert_pem(cert))
    (d / "server.key").write_bytes(key_pem(key))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key"), pin


def run(rings: int, loads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from doorbell.clients.owner.web import WebServer
    from doorbell.core import protocol as p
    from doorbell.sandbox.embedded import DoorbellBroker

    out: dict[str, Any] = {"shell": shell_size()}
    with tempfile.TemporaryDirectory(prefix="bench-webapp-") as tmp:
        tls, pin = tls_files(Path(tmp))
        broker = DoorbellBroker(Path(tmp) / "broker", {"dev-a": "owner-a"}, tls=tls, websockets=True)
        broker.start()
        login = broker.add_owner_login("owner-a", "web")  # the app's own login, as in production
        server = WebServer({"broker_url": broker.ws_url, "owner_id": "owner-a", "login": login}).start()
        dev = broker.client("dev-a")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
                cold, fcp = [], []
                for _ in range(loads):
                    ctx = browser.new_context()
                    page = ctx.new_page()
                    t = time.perf_counter()
                    page.goto(server.url, wait_until="commit")
                    page.wait_for_selector("#login-title", state="attached")
                    cold.append((time.perf_counter() - t) * 1000)
                    fcp.append(page.evaluate("new Promise(r => { const e = performance.getEntriesByName("
                                             "'first-contentful-paint')[0]; if (e) r(e.startTime); else "
                                             "new PerformanceObserver(l => r(l.getEntries()[0].startTime))"
                                             ".observe({type: 'paint', buffered: true}) })"))
                    ctx.close()
                out["cold_load_ms"] = cold
                out["fcp_ms"] = fcp
                ctx = browser.new_context()
                page = ctx.new_page()
                page.goto(server.url)
                page.fill("#password", broker.users[login])
                page.click("button[type=submit]")
                page.wait_for_selector("#live-title")
                lat = []
                for _ in range(rings):
                    ev = p.DeviceEvent(device_id="dev-a", type="ring")
                    payload = ev.to_json()
                    t0 = time.time()
                    dev.pub(p.events_topic("dev-a"), payload, qos=1)
                    shown = page.wait_for_function("(id) => window.__doorbell.shown[id]", arg=ev.event_id,
                                                   polling="raf").json_value()
                    lat.append(float(shown) - t0 * 1000)
                out["ring_shown_ms"] = lat
                ctx.close()
                browser.close()
        finally:
            dev.close()
            server.stop()
            broker.stop()
    out["rings"], out["loads"] = rings, loads
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 rings, 3 cold loads")
    ap.add_argument("--rings", type=int, default=300)
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--json", type=Path, help="write the raw results here")
    a = ap.parse_args(argv)
    r = run(40 if a.quick else a.rings, 3 if a.quick else a.loads)
    if a.json:
        a.json.write_text(json.dumps(r))
    else:
        lat = r["ring_shown_ms"]
        print(f"ring published -> shown: p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 0.99):.1f} ms "
              f"({len(lat)} rings)")
        print(f"app shell: {r['shell']['total_gz_bytes'] / 1024:.1f} KB gzipped "
              f"({r['shell']['total_raw_bytes'] / 1024:.0f} KB raw); loaded on first clip: "
              + ", ".join(f"{f} {n / 1024:.1f} KB gzipped" for f, n in r["shell"]["lazy_gz"].items()))
        print(f"cold load to first render: median {statistics.median(r['cold_load_ms']):.0f} ms; "
              f"first contentful paint median {statistics.median(r['fcp_ms']):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
