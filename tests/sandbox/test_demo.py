"""``doorbell-demo --non-interactive`` as a real process: every step's outcome, the
files and database it leaves, and no process left running (also after SIGTERM)."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

DEMO = [sys.executable, "-m", "doorbell.sandbox.demo", "--non-interactive"]

EXPECTED_STEPS = [
    "Prepare a clean work directory",
    "Start the MQTT broker",
    "Start the S3 server",
    "Enrol the owner",
    "Start the sharing service",
    "Connect the owner's app",
    "Start the doorbell firmware",
    "Start the cloud agent",
    "A visitor: ring the doorbell",
    "The chime rings",
    "The owner's app gets the ring",
    "The clip is sealed, lands in the bucket as ciphertext",
    "Later, another visitor: ring the doorbell",
    "The chime rings",
    "The owner's app gets the ring",
    "The clip is sealed, lands in the bucket as ciphertext",
    "The agency files a request",
    "The owner's app gets the request (routed by area)",
    "The owner approves ONE of the two clips: its keys are re-wrapped",
    "The agency downloads, decrypts and verifies",
    "The unapproved clip stays invisible and unreadable",
    "The owner revokes the grant",
    "A second request; the owner denies it",
    "The owner reads the audit log",
]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def recorded_pids(workdir: Path) -> list[int]:
    try:
        return [e["pid"] for e in json.loads((workdir / "run" / "pids.json").read_text())]
    except (OSError, ValueError):
        return []


def log_tails(workdir: Path, lines: int = 25) -> str:
    """The end of every child's log, for a failure message."""
    out = []
    for f in sorted((workdir / "logs").glob("*.log")):
        out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(out)


def test_demo_runs_every_step_and_leaves_nothing_running(tmp_path: Path) -> None:
    workdir, summary = tmp_path / "demo", tmp_path / "summary.json"
    r = subprocess.run([*DEMO, "--workdir", str(workdir), "--summary-json", str(summary)],
                       capture_output=True, text=True, timeout=240)
    print(r.stdout[-6000:], r.stderr[-3000:])
    data = json.loads(summary.read_text())
    steps = data["steps"]
    assert [s["name"] for s in steps] and all(s["ok"] for s in steps), \
        ([s for s in steps if not s["ok"]], log_tails(workdir))
    assert len(steps) == len(EXPECTED_STEPS)
    for s, want in zip(steps, EXPECTED_STEPS):
        assert s["name"].startswith(want), (s["name"], want)
    assert r.returncode == 0 and data["ok"] is True and data["outcome"] == "ok"
    assert "✓ every step worked (24/24 steps" in r.stdout

    by = {s["n"]: s for s in steps}
    # the owner's browser app was served, with its own broker login and the TLS WebSockets listener
    app = next(s for s in steps if s["name"].startswith("Connect the owner's app"))["data"]
    assert app["app_url"].startswith("http://127.0.0.1:") and app["ws_url"].startswith("wss://127.0.0.1:")
    assert app["app_login"] == "demo-owner.web" and data["facts"]["app_url"] == app["app_url"]
    # the rings: two clips, each with pre-roll, seen by the owner, in the bucket as the announced ciphertext
    # under an opaque name (encryption is on), in the owner's own index
    clips = []
    for _ring, chime, event, bucket in ((9, 10, 11, 12), (13, 14, 15, 16)):
        assert by[chime]["data"]["pre_roll_s"] >= 1.5
        assert by[event]["data"]["event"]["type"] == "ring"
        assert by[event]["data"]["event"]["device_id"] == "front-door"
        assert by[event]["data"]["latency_s"] < 5
        clip, obj = by[bucket]["data"]["clip"], by[bucket]["data"]["object"]
        assert clip["clip_id"] == by[chime]["data"]["clip_id"] == by[event]["data"]["event"]["clip_id"]
        assert obj["age"] is True and obj["sha256"] == clip["objects"]["video"]["sha256"]
        assert obj["size"] == clip["objects"]["video"]["size"] > 1000
        assert obj["key"].startswith("front-door/o/") and clip["clip_id"] not in obj["key"]
        clips.append(clip)
    assert data["facts"]["clips"] == [c["clip_id"] for c in clips]

    # the request offered both clips; the owner approved exactly the first
    assert by[18]["data"]["offered"] == sorted(data["facts"]["clips"])
    assert by[19]["data"]["approved"] is True and by[19]["data"]["chosen"] == [clips[0]["clip_id"]]
    downloads = by[20]["data"]["downloads"]
    assert [d["clip_id"] for d in downloads] == [clips[0]["clip_id"]]
    f = Path(downloads[0]["path"])
    assert downloads[0]["sealed"] is True and downloads[0]["verified"] == "device signature and manifest"
    assert f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == downloads[0]["sha256"]
    assert f.read_bytes()[4:8] == b"ftyp"                                   # a real MP4, decrypted
    assert by[21]["data"]["refused"] == "not_found"
    assert by[22]["data"]["clips_shared_after"] == 0
    assert by[23]["data"]["status"]["clips_shared"] == 0

    # the owner verified the chain; check it again from the database the demo left behind
    v = by[24]["data"]["verification"]
    assert v["ok"] is True and v["checked"] >= 8
    assert {"delivery", "decision", "grant", "link_issued", "revocation"} <= set(by[24]["data"]["kinds"])
    from doorbell.core.config import SharingSection
    from sharing_service.context import ServiceContext
    from sharing_service.core import SharingCore
    from sharing_service.db import Database

    db = Database(f"sqlite:///{workdir / 'sharing' / 'sharing.db'}")
    try:
        report = SharingCore(ServiceContext(db, SharingSection())).registry.verify_audit()
    finally:
        db.dispose()
    assert report["ok"] is True and report["head_seq"] == v["head_seq"] and report["head_hash"] == v["head_hash"]

    # nothing left running; secrets stayed private
    assert data["pids"] and len(data["pids"]) == 5
    assert not [p for p in data["pids"] if alive(p)]
    for name in ("device", "sharing", "owner", "agency"):
        assert (workdir / "config" / f"{name}.yaml").stat().st_mode & 0o077 == 0
    assert (workdir / "owner" / "owner_ed25519.pem").stat().st_mode & 0o077 == 0


def test_sigterm_stops_everything_and_the_next_run_starts_clean(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([*DEMO, "--workdir", str(workdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    pids: set[int] = set()
    out = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # stop it once every process is up
            out.append(line)
            pids.update(recorded_pids(workdir))
            if "Start the cloud agent" in line:
                break
        time.sleep(0.5)
        pids.update(recorded_pids(workdir))
        assert len(pids) == 5, (pids, "".join(out))
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(out) + rest
    assert proc.returncode == 130, text
    assert "Interrupted: stopping everything" in text and "all stopped." in text
    assert not [p for p in pids if alive(p)], text
    assert recorded_pids(workdir) == []

    # a leftover from a "crashed" run (a recorded process still alive) is stopped by the next run
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    start = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    (workdir / "run" / "pids.json").write_text(json.dumps([{"name": "agent", "pid": sleeper.pid, "start": start}]))
    (workdir / "spool" / "stale-marker").write_text("from the last run")
    summary = tmp_path / "s.json"
    r = subprocess.run([*DEMO, "--workdir", str(workdir), "--summary-json", str(summary)],
                       capture_output=True, text=True, timeout=240)
    sleeper.poll()
    assert sleeper.returncode is not None, "the leftover process was not stopped"
    data = json.loads(summary.read_text())
    failed = [st for st in data["steps"] if not st.get("ok", True)]
    assert r.returncode == 0 and data["ok"], (failed, r.stdout[-4000:], log_tails(workdir))
    assert data["steps"][0]["data"]["leftovers_killed"] == [f"agent (pid {sleeper.pid})"]
    assert not (workdir / "spool" / "stale-marker").exists()


def test_bad_demo_arguments(tmp_path: Path) -> None:
    r = subprocess.run([*DEMO, "--video", str(tmp_path / "missing.mp4")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such video file" in r.stderr
    r = subprocess.run([*DEMO, "--camera", "0", "--video", "x.mp4"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_interactive_demo_owner_says_no_and_nothing_is_shared(tmp_path: Path) -> None:
    """The interactive story with stdin answers: Enter, Enter (two rings), 'n' at the owner's
    real confirmation prompt, Enter (deny the second request)."""
    workdir, summary = tmp_path / "demo", tmp_path / "summary.json"
    r = subprocess.run([sys.executable, "-m", "doorbell.sandbox.demo", "--workdir", str(workdir),
                        "--summary-json", str(summary)], input="\n\nn\n\n", capture_output=True, text=True,
                       timeout=240)
    data = json.loads(summary.read_text())
    assert r.returncode == 0 and data["ok"], (r.stdout[-5000:], log_tails(workdir))
    assert r.stdout.count("Press Enter to ring the doorbell") == 2
    assert "Sign and send this approval? [y/N]" in r.stdout
    approve = next(s for s in data["steps"] if s["name"].startswith("The owner approves"))
    assert approve["data"]["approved"] is False and "signed denial" in approve["detail"]
    download = next(s for s in data["steps"] if s["name"].startswith("The agency downloads"))
    assert download["data"]["downloads"] == [] and download["data"]["status"]["clips_shared"] == 0
    assert not any(s["name"].startswith("The owner revokes") for s in data["steps"])    # nothing to revoke
    assert not list((workdir / "downloads").rglob("*.mp4"))
    audit = data["steps"][-1]["data"]
    assert audit["verification"]["ok"] and "grant" not in audit["kinds"] and "download" not in audit["kinds"]
    assert not [p for p in data["pids"] if alive(p)]


def test_interactive_demo_answered_in_the_browser(tmp_path: Path) -> None:
    """The interactive story's police request is answered in the browser app: at the owner's prompt the
    demo shows a pairing code, a real Chromium links itself with it and denies the request there; the
    demo takes that answer (no terminal answer is given) and the story goes on."""
    import queue
    import re
    import threading

    from tests.support.web import CHROMIUM, launch_chromium

    if not Path(CHROMIUM).exists():
        import pytest

        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    workdir, summary = tmp_path / "demo", tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, "-m", "doorbell.sandbox.demo", "--workdir", str(workdir),
                             "--summary-json", str(summary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    lines: "queue.Queue[str]" = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()  # type: ignore

    def until(pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for ln in seen:
                m = re.search(pattern, ln)
                if m:
                    seen.remove(ln)
                    return m
            left = deadline - time.monotonic()
            assert left > 0, f"demo never printed {pattern!r}: {''.join(seen)[-3000:]}"
            try:
                seen.append(lines.get(timeout=left))
            except queue.Empty:
                continue

    try:
        proc.stdin.write("\n\n")  # the two rings
        proc.stdin.flush()
        app = until(r"open (http://127\.0\.0\.1:\d+/) and sign in as (\S+), password (\S+) \(the broker at (\S+) ")
        code = until(r"Link this browser, code ([0-9A-Z]{5}-[0-9A-Z]{5})").group(1)
        rid = until(r"then open \S+#/requests/([0-9a-f]+) ").group(1)
        url, login, password, ws_url = app.groups()
        with sync_playwright() as pw:
            browser = launch_chromium(pw, workdir / "tls" / "server.crt")
            try:
                page = browser.new_page()
                page.set_default_timeout(60000)
                page.goto(url)
                page.fill("#broker", ws_url)
                page.fill("#login", login)
                page.fill("#password", password)
                page.click("button[type=submit]")
                page.wait_for_selector("#nav:not([hidden])")
                page.goto(url + "#/devices")
                page.fill("#pair-code", code)
                page.get_by_role("button", name="Link", exact=True).click()
                page.wait_for_selector("#this-key")
                page.goto(f"{url}#/requests/{rid}")
                page.click("text=Review denial…")
                page.click("#confirm-send")
                page.wait_for_selector(".toast.ok >> text=Denied: nothing shared")
            finally:
                browser.close()
        until(r"answered in the browser: denied")
        until(r"A second request; the owner denies it")  # its "Press Enter" prompt ends no line: answer now
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=240) == 0, (''.join(seen)[-5000:], log_tails(workdir))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    data = json.loads(summary.read_text())
    approve = next(s for s in data["steps"] if s["name"].startswith("The owner approves"))
    assert approve["data"] == {"approved": False, "answered": "browser"}, approve
    assert "in the browser" in approve["detail"]
    audit = data["steps"][-1]["data"]
    assert audit["verification"]["ok"] and "key_enrolled" in audit["kinds"] and "grant" not in audit["kinds"]
    assert not [p for p in data["pids"] if alive(p)]
