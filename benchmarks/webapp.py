"""The owner's web app in Debian's headless chromium (Playwright), on loopback.

    .venv/bin/python benchmarks/webapp.py [--quick] [--rings N] [--presses N] [--size WxH] [--json PATH]

- press to ring shown: a button press on the real firmware (``doorbell firmware run
  --ring-on-stdin``, gpiozero's MockFactory: a stdin line drives the mock pin, so the press
  takes the real edge callback, debounce, chime and spool path) -> the real agent (``doorbell
  agent run``) -> Mosquitto -> drawn in the open app, p50/p99 over ``--presses`` presses, one
  at a time, spaced above the firmware's 30 ms debounce. Timed from the firmware's own stamp
  of the button edge (``DeviceEvent.ts``) and from the stdin write here; the ring's arrival at
  an MQTT subscriber here splits it into device (edge -> broker -> subscriber) and app legs;
- ring shown (the last leg alone): a ring event published by the device's account (what the
  agent sends) -> drawn in the open app (MQTT over TLS WebSockets through a real Mosquitto),
  p50/p99 over ``--rings`` rings, one at a time, before the agent runs;
- all ends read the same system clock (the app stamps ``performance.timeOrigin +
  performance.now()`` in ``window.__doorbell.shown[event_id]`` after the DOM update);
- app shell size: every file the shell needs (index.html, app.js, app.css, manifest, icon,
  service worker), each gzipped at level 9, summed; the age chunk (sealed.js, loaded when a
  sealed clip is first opened) is reported on its own;
- cold load: a fresh browser context (empty cache) -> the first screen rendered (the sign-in
  form in the DOM), and the browser's first-contentful-paint, over ``--loads`` loads.

Imports the sandbox (doorbell.sandbox.stack starts the broker, bucket, agent and firmware) and
the app server, never tests/.
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


def wait_shown(page: Any, event_id: str, timeout_s: float = 10.0) -> float:
    """When the app drew ``event_id`` (ms since the epoch, the app's own stamp)."""
    return float(page.wait_for_function("(id) => window.__doorbell.shown[id]", arg=event_id, polling="raf",
                                        timeout=timeout_s * 1000).json_value())


def presses_to_drawn(stack: Any, page: Any, presses: int, warm_up: int = 5, gap_s: float = 0.05) -> dict[str, Any]:
    """Press the firmware's button ``presses`` times (after ``warm_up`` unmeasured presses: camera,
    encoder, first clip, every path run once), each ring awaited in the app before the next press,
    ``gap_s`` apart (above the 30 ms debounce). Lists in ms: edge/stdin write -> drawn, and the legs."""
    from doorbell.core import protocol as p

    topic = p.events_topic(stack.device)
    obs = stack.broker.client("admin")
    obs.sub(topic)
    obs.sub(p.status_topic(stack.device))
    out: dict[str, list[float]] = {k: [] for k in ("edge_drawn_ms", "sent_drawn_ms", "edge_mqtt_ms", "mqtt_drawn_ms")}
    try:
        stack.start_agent(observer=obs, timeout=60)
        fw = stack.start_firmware()
        for i in range(warm_up + presses):
            sent = time.time()
            fw.stdin.write(b"\n")
            fw.stdin.flush()
            while True:  # the firmware's motion events share the topic: the ring is ours
                msg = obs.expect(topic, wait=60 if i == 0 else 10)  # the first press waits for the camera
                ev = p.decode(p.DeviceEvent, msg.payload)
                if ev.type == "ring":
                    break
            at_mqtt = time.time() - (time.monotonic() - msg.timestamp)  # paho stamps receipt (monotonic)
            drawn = wait_shown(page, ev.event_id)
            if i >= warm_up:
                out["edge_drawn_ms"].append(drawn - ev.ts * 1000)
                out["sent_drawn_ms"].append(drawn - sent * 1000)
                out["edge_mqtt_ms"].append((at_mqtt - ev.ts) * 1000)
                out["mqtt_drawn_ms"].append(drawn - at_mqtt * 1000)
            time.sleep(gap_s)
    except BaseException:
        for f in (stack.work / "firmware.log", stack.log_file):  # the work dir goes away: show why first
            if f.exists():
                print(f"--- {f.name} (last lines)\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]),
                      file=sys.stderr)
        raise
    finally:
        stack.stop_agent()
        obs.close()
    return {**out, "gap_s": gap_s}


def run(rings: int, loads: int, presses: int, size: tuple[int, int]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from doorbell.clients.owner.web import WebServer
    from doorbell.core import protocol as p
    from doorbell.sandbox.stack import agent_stack, mock_firmware_config

    out: dict[str, Any] = {"shell": shell_size()}
    with tempfile.TemporaryDirectory(prefix="bench-webapp-") as tmp:
        tls, pin = tls_files(Path(tmp))
        with agent_stack(Path(tmp), "dev-a", "owner-a", broker_options={"tls": tls, "websockets": True},
                         config=mock_firmware_config(*size, 15.0), s3_timeout=90) as stack:
            broker = stack.broker
            login = broker.add_owner_login("owner-a", "web")  # the app's own login, as in production
            server = WebServer({"broker_url": broker.ws_url, "owner_id": "owner-a", "login": login}).start()
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
                    # the last leg alone, before the agent takes the device's login (one session per login)
                    dev = broker.client("dev-a")
                    lat = []
                    try:
                        for _ in range(rings):
                            ev = p.DeviceEvent(device_id="dev-a", type="ring")
                            payload = ev.to_json()
                            t0 = time.time()
                            dev.pub(p.events_topic("dev-a"), payload, qos=1)
                            lat.append(wait_shown(page, ev.event_id) - t0 * 1000)
                    finally:
                        dev.close()
                    out["ring_shown_ms"] = lat
                    out["press"] = presses_to_drawn(stack, page, presses)
                    ctx.close()
                    browser.close()
            finally:
                server.stop()
    out["rings"], out["loads"], out["presses"] = rings, loads, presses
    out["camera"] = f"{size[0]}x{size[1]}@15"
    return out


def _p(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} ms, p99 {pct(values, 0.99):.1f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 rings, 30 presses at 320x240, 3 cold loads")
    ap.add_argument("--rings", type=int, default=300)
    ap.add_argument("--presses", type=int, default=300)
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--size", default=None, help="camera WxH (default 1280x720, the product default; quick 320x240)")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    a = ap.parse_args(argv)
    w, h = (int(x) for x in (a.size or ("320x240" if a.quick else "1280x720")).split("x"))
    r = run(40 if a.quick else a.rings, 3 if a.quick else a.loads, 30 if a.quick else a.presses, (w, h))
    if a.json:
        a.json.write_text(json.dumps(r))
    else:
        pr = r["press"]
        print(f"button edge -> ring shown: {_p(pr['edge_drawn_ms'])} ({r['presses']} presses, "
              f"camera {r['camera']})")
        print(f"  stdin press -> ring shown: {_p(pr['sent_drawn_ms'])}")
        print(f"  of which button edge -> MQTT subscriber: {_p(pr['edge_mqtt_ms'])}; "
              f"MQTT subscriber -> shown: {_p(pr['mqtt_drawn_ms'])}")
        print(f"ring published -> shown: {_p(r['ring_shown_ms'])} ({len(r['ring_shown_ms'])} rings)")
        print(f"app shell: {r['shell']['total_gz_bytes'] / 1024:.1f} KB gzipped "
              f"({r['shell']['total_raw_bytes'] / 1024:.0f} KB raw); loaded on first clip: "
              + ", ".join(f"{f} {n / 1024:.1f} KB gzipped" for f, n in r["shell"]["lazy_gz"].items()))
        print(f"cold load to first render: median {statistics.median(r['cold_load_ms']):.0f} ms; "
              f"first contentful paint median {statistics.median(r['fcp_ms']):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
