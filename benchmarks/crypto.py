"""Clip encryption throughput per core: our streaming age encryptor vs the stock ``age`` CLI.

    .venv/bin/python benchmarks/crypto.py [--quick] [--json PATH]

On the same files (a 1.5 MB and a 40 MB clip-sized file of random bytes, as
H.264 is to a cipher), file to file in one temporary directory, alternating
the order of the contestants in each run:

- ``ours``: ``doorbell.core.age.encrypt`` in this process, to two X25519
  recipients (a household), SHA-256 of plaintext and ciphertext included
  (the manifest needs both, so the firmware always pays for them; the share
  of our CPU time those two hashes take is reported alongside: a Pi's
  Cortex-A53 has no SHA instructions, so there they weigh more);
- ``age``: ``age -r R1 -r R2 -o OUT IN`` (Debian's Go build), its CPU time
  (user + sys, from ``getrusage``), and the same with its start-up cost (its
  CPU time on an empty file, median of 5) subtracted;
- ``rage``: ``pyrage.encrypt_io`` (rage, Rust), in this process, when installed.

Throughput per core is MB of plaintext per CPU second (MB = 2**20 bytes), so
it does not depend on how busy the other cores are. Decryption is measured the
same way (ours vs ``age -d``) as information. Also reported: the peak of
Python allocations (tracemalloc) while we encrypt the largest file, which must
stay a few 64 KiB chunks whatever the size.

Without ``--json`` the result prints as benchmarks/run_all.py's table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from doorbell.core import age  # noqa: E402

MB = 1024 * 1024
SIZES = [("1.5 MB clip", int(1.5 * MB)), ("40 MB clip", 40 * MB)]
QUICK_SIZES = [("1.5 MB clip", int(1.5 * MB)), ("8 MB clip", 8 * MB)]


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cli_cpu(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of an external command."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return _children_cpu() - c0, time.perf_counter() - t0


def in_process(fn: Callable[..., object], *args: Any) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - c0, time.perf_counter() - t0


def ours_encrypt(src: Path, dst: Path, recipients: list[age.X25519Recipient]) -> None:
    with open(src, "rb") as r, open(dst, "wb") as w:
        age.encrypt(r, w, recipients)


def ours_decrypt(src: Path, dst: Path, identities: list[age.X25519Identity]) -> None:
    with open(src, "rb") as r, open(dst, "wb") as w:
        age.decrypt(r, w, identities)


def rage_encrypt(src: Path, dst: Path, recipients: list[Any]) -> None:
    import pyrage
    with open(src, "rb") as r, open(dst, "wb") as w:
        pyrage.encrypt_io(r, w, recipients)


def two_hashes(data: bytes) -> None:
    hashlib.sha256(data).digest()
    hashlib.sha256(data).digest()


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MB)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, MB)
            fh.write(block[:n])
            left -= n
            block = block[1:] + block[:1]  # not one repeated MB


def run(sizes: list[tuple[str, int]], runs: int, workdir: Path) -> dict[str, Any]:
    exe = shutil.which("age")
    if exe is None:
        raise SystemExit("the age CLI is missing: apt-get install age (scripts/bootstrap.sh --test does)")
    try:
        import pyrage
    except ImportError:
        pyrage = None
    household = [age.generate_identity(), age.generate_identity()]
    recipients = [h.recipient for h in household]
    rage_recipients = [pyrage.x25519.Recipient.from_str(str(x)) for x in recipients] if pyrage else []
    rargs = [a for r in recipients for a in ("-r", str(r))]
    keyfile = workdir / "key.txt"
    age.save_identity(household[0], keyfile)
    empty = workdir / "empty"
    empty.write_bytes(b"")
    startup = statistics.median(cli_cpu([exe, *rargs, "-o", str(workdir / "empty.age"), str(empty)])[0]
                                for _ in range(5))
    out: dict[str, Any] = {"age_version": subprocess.run([exe, "--version"], capture_output=True,
                                                         text=True).stdout.strip(),
                           "pyrage": pyrage is not None, "age_startup_cpu_s": startup, "runs": runs, "files": []}
    for label, size in sizes:
        src = workdir / f"clip-{size}.mp4"
        make_file(src, size)
        data = src.read_bytes()
        ours_out, age_out, rage_out = (workdir / f"{n}-{size}.age" for n in ("ours", "age", "rage"))

        rows = []
        for i in range(runs):
            row: dict[str, float] = {}
            order = ["ours", "age", "rage"] if i % 2 == 0 else ["rage", "age", "ours"]
            for who in order:
                if who == "ours":
                    row["ours_cpu_s"], row["ours_wall_s"] = in_process(ours_encrypt, src, ours_out, recipients)
                elif who == "age":
                    row["age_cpu_s"], row["age_wall_s"] = cli_cpu([exe, *rargs, "-o", str(age_out), str(src)])
                elif pyrage is not None:
                    row["rage_cpu_s"], row["rage_wall_s"] = in_process(rage_encrypt, src, rage_out, rage_recipients)
            row["ours_dec_cpu_s"], _ = in_process(ours_decrypt, ours_out, workdir / "dec.mp4", household[:1])
            row["sha256_x2_cpu_s"], _ = in_process(two_hashes, data)
            row["age_dec_cpu_s"], _ = cli_cpu([exe, "-d", "-i", str(keyfile), "-o", str(workdir / "dec2.mp4"),
                                               str(age_out)])
            rows.append(row)
        # every output opens with the other implementation (a benchmark of broken output would mean nothing)
        subprocess.run([exe, "-d", "-i", str(keyfile), "-o", str(workdir / "check.mp4"), str(ours_out)], check=True)
        assert (workdir / "check.mp4").read_bytes() == src.read_bytes()
        mbs = size / MB
        out["files"].append({
            "label": label, "bytes": size, "rows": rows,
            "ours_MBps": [mbs / r["ours_cpu_s"] for r in rows],
            "age_MBps": [mbs / r["age_cpu_s"] for r in rows],
            "age_MBps_minus_startup": [mbs / max(r["age_cpu_s"] - startup, 1e-6) for r in rows],
            "rage_MBps": [mbs / r["rage_cpu_s"] for r in rows] if pyrage is not None else [],
            "ours_dec_MBps": [mbs / r["ours_dec_cpu_s"] for r in rows],
            "sha256_x2_share": [r["sha256_x2_cpu_s"] / r["ours_cpu_s"] for r in rows],
            "age_dec_MBps": [mbs / r["age_dec_cpu_s"] for r in rows],
        })
        del data
        for p in (src, ours_out, age_out, rage_out):
            p.unlink(missing_ok=True)
    big = max(sizes, key=lambda s: s[1])[1]
    src = workdir / "peak.mp4"
    make_file(src, big)
    tracemalloc.start()
    with open(src, "rb") as r, open(workdir / "peak.age", "wb") as w:
        age.encrypt(r, w, recipients)
    out["ours_peak_traced_bytes"] = tracemalloc.get_traced_memory()[1]
    out["peak_file_bytes"] = big
    tracemalloc.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller files, fewer runs")
    ap.add_argument("--runs", type=int, help="runs per file (default 5, quick 2)")
    ap.add_argument("--json", type=Path, help="write the raw results here instead of printing the table")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-crypto-", dir=os.environ.get("BENCH_SPOOL_DIR")) as d:
        raw = run(QUICK_SIZES if a.quick else SIZES, a.runs or (2 if a.quick else 5), Path(d))
    if a.json:
        a.json.write_text(json.dumps(raw, indent=1))
        return 0
    from benchmarks import run_all
    doc = {"mode": "quick" if a.quick else "full", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "benchmarks/crypto.py" + (" --quick" if a.quick else ""), "machine": run_all.machine(),
           "code": run_all.code_version(), "loadavg_start": "-", "loadavg_end": "-", "elapsed_s": 0.0,
           "errors": {}, "figures": [f.row() for f in run_all.crypto_figures(raw)]}
    print(run_all.render_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
