"""Helpers for the owner web app's end-to-end tests: Debian's chromium driven by Playwright
against the real stack (Mosquitto with a TLS WebSockets listener, the sharing service,
SeaweedFS), each test with owners and devices of its own.

Chromium trusts the test broker's self-signed certificate by its SPKI pin only
(``--ignore-certificate-errors-spki-list``), not by ignoring certificate errors.
Playwright's own browser download is never used.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from doorbell.core import protocol as p
from tests.support.clients import HOME_A, Result, iso, run_cli
from tests.support.polling import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).resolve().parents[2] / "doorbell" / "clients" / "web" / "node_modules" / "axe-core" / "axe.min.js"
LAPTOP = {"width": 1280, "height": 800}


def spki_pin(cert_pem: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def launch_chromium(playwright: Any, cert_pem: Path) -> Any:
    pin = f"--ignore-certificate-errors-spki-list={spki_pin(cert_pem)}"
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, pin])


@dataclass
class Home:
    """One owner with one device, fresh for a test (unique ids: no retained state is shared)."""

    owner_id: str
    device_id: str
    key_file: Path
    config: Path
    password: str
    web_login: str      # the browser's own broker login (owner.web): a session belongs to its login
    web_password: str


@dataclass(frozen=True)
class SealedClip:
    """A sealed clip as a device uploaded it: its id, its objects' bucket keys, and its plaintext."""

    clip_id: str
    keys: dict[str, str]  # video, snapshot, metadata, manifest -> bucket key
    video: bytes
    snapshot: bytes
    announcement: bytes  # the SealedClipMessage as the agent publishes it


@dataclass
class WebEnv:
    service: Any
    broker: Any
    s3: Any
    app_url: str
    tmp: Path
    agency_key: str
    a: Home
    b: Home
    clips: dict[str, bytes] = field(default_factory=dict)
    _clients: list[Any] = field(default_factory=list)
    _devices: dict[str, Any] = field(default_factory=dict)
    _device_keys: dict[str, Any] = field(default_factory=dict)

    @property
    def core(self) -> Any:
        return self.service.core

    def device(self, home: Home) -> Any:
        """The device's one connection (the broker binds a session to its login: a second
        connection as the same device would replace the first)."""
        c = self._devices.get(home.device_id)
        if c is None:
            c = self._devices[home.device_id] = self.broker.client(home.device_id)
            self._clients.append(c)
        return c

    def owner(self, home: Home, *args: str, stdin: str = "") -> Result:
        return run_cli(["owner", *args, "--config", str(home.config)], stdin)

    def put_clip(self, home: Home, started_at: float, length: float = 5.0, data: bytes | None = None) -> str:
        ms = int(started_at * 1000) % 1000
        clip_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started_at))}{ms:03d}Z-{secrets.token_hex(3)}"
        data = data or b"\x00\x00\x00\x18ftypmp42" + secrets.token_bytes(3000)
        key, snap = f"{home.device_id}/{clip_id}.mp4", f"{home.device_id}/{clip_id}.jpg"
        s3c = self.s3.client()
        s3c.put_object(Bucket=self.s3.bucket, Key=key, Body=data)
        s3c.put_object(Bucket=self.s3.bucket, Key=snap, Body=gradient_jpeg(96, 54))
        msg = p.ClipMessage(clip_id=clip_id, device_id=home.device_id, trigger="ring", started_at=started_at,
                            ended_at=started_at + length, trigger_at=started_at + 2, pre_roll_s=2, key=key,
                            snapshot_key=snap, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        self.device(home).pub(p.clips_topic(home.device_id), msg.to_json(), qos=1)
        from sharing_service.models import Clip

        def indexed() -> bool:
            with self.core.db.read() as s:
                return s.get(Clip, clip_id) is not None

        wait_for(indexed, what=f"clip {clip_id} indexed")
        self.clips[clip_id] = data
        return clip_id

    def seal_device(self, home: Home) -> Any:
        """Register a device key for ``home``'s device, as provisioning does with encryption on (the device
        then seals: requests reach its owner by area, with the agency's recipient); returns the key."""
        from doorbell.core.signing import generate_key, public_key_text

        key = self._device_keys.get(home.device_id)
        if key is None:
            key = self._device_keys[home.device_id] = generate_key()
            self.core.registry.set_device_key(home.device_id, public_key_text(key))
        return key

    def put_sealed_clip(self, home: Home, recipients: list[str], started_at: float, video: bytes,
                        snapshot: bytes, length: float = 10.0, announce: bool = True) -> SealedClip:
        """What the firmware and the agent do for one clip with encryption on: the spool's age writer and
        signed manifest, the four age files uploaded under opaque names, the announcement on ``clips``."""
        from doorbell.core import age
        from doorbell.core.spool import SEALED_FILES, Sealing, Spool

        seal = Sealing(tuple(age.parse_recipient(r) for r in recipients), self.seal_device(home))
        spool = Spool(self.tmp / f"spool-{home.device_id}")
        st = spool.stage_clip(ts=started_at, sealing=seal)
        sink = st.open_video()
        for i in range(0, len(video), 65536):
            sink.write(video[i:i + 65536])
        st.write_snapshot(snapshot)
        clip = st.publish(device_id=home.device_id, trigger="ring", started_at=started_at,
                          ended_at=started_at + length, trigger_at=started_at + 2, pre_roll_s=2.0, duration_s=length)
        loaded = spool.get_clip(clip.clip_id)
        msg = loaded.sealed_message("", home.device_id)
        s3c = self.s3.client()
        for kind, obj in msg.objects.items():
            s3c.put_object(Bucket=self.s3.bucket, Key=obj.key, Body=(loaded.path / SEALED_FILES[kind]).read_bytes())
        if announce:
            self.device(home).pub(p.clips_topic(home.device_id), msg.to_json(), qos=1)
        return SealedClip(clip.clip_id, {k: o.key for k, o in msg.objects.items()}, video, snapshot, msg.to_json())

    def use_sharing_url(self, home: Home) -> None:
        """Point the home's owner config at this service (share links are made from ``owner.sharing_url``)."""
        import yaml

        cfg = yaml.safe_load(home.config.read_text())
        cfg["owner"]["sharing_url"] = self.service.url
        home.config.write_text(yaml.safe_dump(cfg))

    def agency_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.service.url, headers={"Authorization": f"Bearer {self.agency_key}"},
                            timeout=30)

    def file_request(self, center: tuple[float, float] = HOME_A, reason: str = "burglary", **over: Any) -> str:
        now = time.time()
        body = {"case_number": "2026-000123", "legal_basis": "Search warrant 4711", "reason": reason,
                "attest_not_protest": True, "window_start": iso(now - 3600 - 600), "window_end": iso(now),
                "lat": center[0], "lon": center[1], "radius_m": 200}
        body.update(over)
        with self.agency_http() as c:
            r = c.post("/v1/requests", json=body)
        assert r.status_code == 201, r.text
        assert self.service.matcher.wait_idle(timeout=30)
        return str(r.json()["id"])

    def close(self) -> None:
        for c in self._clients:
            c.close()


def new_home(broker: Any, core: Any, tmp: Path, location: tuple[float, float]) -> Home:
    import yaml

    from doorbell.core.signing import generate_key, public_key_text, save_private_key

    tag = secrets.token_hex(3)
    owner, device = f"own-{tag}", f"dev-{tag}"
    broker.add_device(device, owner)
    key = generate_key()
    key_file = tmp / f"{owner}.pem"
    save_private_key(key, key_file)
    core.registry.add_owner(owner, public_key_text(key))
    core.registry.add_device(device, owner, *location)
    cfg = tmp / f"{owner}.yaml"
    cfg.write_text(yaml.safe_dump({
        "owner": {"owner_id": owner, "key_file": str(key_file)},
        "mqtt": {"host": broker.host, "port": broker.port, "username": owner, "password": broker.users[owner]},
    }))
    login = broker.add_owner_login(owner, "web")
    return Home(owner, device, key_file, cfg, broker.users[owner], login, broker.users[login])


class LinkRun:
    """``doorbell owner link --code CODE --yes`` as a real process, started once it listens."""

    def __init__(self, home: Home, code: str, wait_s: float = 60, app_url: str | None = None):
        import subprocess
        import sys

        extra = ["--app-url", app_url] if app_url else []
        self.proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "owner", "link", "--code", code, "--yes",
                                      "--wait", str(wait_s), "--config", str(home.config), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # printed after it subscribed to the pairing topic
        assert first.startswith("Pairing code:"), (first, self.proc.stderr.read() if self.proc.stderr else "")
        self.link: str | None = None
        self.qr: list[str] = []
        if app_url:
            self.proc.stdout.readline()  # "In the app: ..."
            self.link = self.proc.stdout.readline().split("Or open: ", 1)[1].strip()
            while line := self.proc.stdout.readline():  # the QR code, then "Waiting for the device…"
                if line.startswith("Waiting"):
                    break
                self.qr.append(line.rstrip("\n"))

    def finish(self, timeout: float = 60) -> Result:
        out, err = self.proc.communicate(timeout=timeout)
        return Result(self.proc.returncode, out, err)


def sign_in(page: Any, env: WebEnv, home: Home, login_name: str | None = None) -> None:
    """Sign the page in with the home's browser login, or with a further login ``<owner>.<login_name>``
    (two apps connected at once need two logins: the broker binds a session to its login)."""
    login, password = home.web_login, home.web_password
    if login_name:
        login = env.broker.add_owner_login(home.owner_id, login_name)
        password = env.broker.users[login]
    page.goto(env.app_url)
    page.fill("#broker", env.broker.ws_url)
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")


def pair_browser(page: Any, env: WebEnv, home: Home) -> str:
    """Link the signed-in page as a new key of ``home`` through the real pairing flow; returns its key id."""
    from doorbell.core import linking

    code = linking.new_code()
    run = LinkRun(home, code)
    page.goto(env.app_url + "#/devices")
    page.fill("#pair-code", linking.format_code(code))
    page.get_by_role("button", name="Link", exact=True).click()
    page.wait_for_selector("#this-key", timeout=60000)
    res = run.finish()
    assert res.code == 0, res
    return str(page.evaluate("window.__doorbell.state.keys.keyId"))


def synthetic_clip(path: Path, frames: int = 15) -> bytes:
    """doorbell.sandbox.media's synthetic clip (frame i: the left (i*7) columns (40, 120, 200), the rest
    black, 160x120 at 15 fps), remuxed as the device writes it: a fragmented MP4."""
    import av

    from doorbell.sandbox.media import make_mp4

    plain = make_mp4(path.with_suffix(".plain.mp4"), frames=frames)
    with av.open(str(plain)) as src, av.open(str(path), "w", format="mp4",
                                             options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is None:
                continue
            pkt.stream = stream
            dst.mux(pkt)
    return path.read_bytes()


def gradient_jpeg(width: int = 320, height: int = 180) -> bytes:
    """A small, smooth real JPEG (a stand-in doorstep snapshot that compresses well in screenshots)."""
    import io

    import av
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 200 // width + 30), (y * 120 // height + 80), np.full_like(x, 150)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format="image2pipe") as out:
        s = out.add_stream("mjpeg", rate=1)
        s.width, s.height, s.pix_fmt = width, height, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
        for pkt in [*s.encode(frame), *s.encode()]:
            out.mux(pkt)
    return buf.getvalue()


# ---- screenshots (tests/clients/web/test_screenshots*.py; scripts/screenshots.sh)

def png_size(path: Path) -> tuple[int, int]:
    import struct

    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def snap(page: Any, path: Path) -> None:
    """The top of the screen (the confirmation: the question itself), without a passing toast."""
    page.evaluate("const t = document.getElementById('toast'); if (t) t.hidden = true;"
                  "const c = document.getElementById('confirm');"
                  "if (c && !c.hidden) c.scrollIntoView({block: 'start'}); else window.scrollTo(0, 0)")
    page.screenshot(path=str(path))


def finish_screenshots(out: Path, screens: list[str] | tuple[str, ...]) -> None:
    """Shrink every screen's phone and laptop PNG and check it is the viewport's size and not blank."""
    for name in screens:
        for size_name, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
            path = out / f"{name}-{size_name}.png"
            shrink(path)
            assert png_size(path) == (viewport["width"], viewport["height"]), path
            assert path.stat().st_size > 5000, f"{path} looks blank"


def shrink(path: Path) -> None:
    """Small PNGs for the docs: a 64-colour palette is plenty for a flat UI."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def axe_problems(page: Any) -> list[str]:
    """Serious and critical axe-core violations on the page (its context needs ``bypass_csp=True``)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', "
                           "'wcag21aa', 'best-practice']}})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


SEEK_JS = """async (t) => { const v = document.querySelector('#clip-video');
    if (v.readyState < 1) await new Promise((r) => v.addEventListener('loadedmetadata', r, { once: true }));
    await new Promise((r) => { v.addEventListener('seeked', r, { once: true }); v.currentTime = t; }); }"""


def seek_video(page: Any, t: float) -> None:
    """Seek the clip player's <video> to ``t`` seconds and wait until that frame is decoded."""
    page.evaluate(SEEK_JS, t)
