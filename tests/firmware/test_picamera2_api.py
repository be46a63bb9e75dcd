"""The picamera2 backend against the installed picamera2 package's API, without importing it.

picamera2 needs libcamera and a Pi, so it cannot run here; its sources are
installed (``pip install --no-deps picamera2``) and parsed with ``ast``. Every
picamera2 class, method and keyword the backend uses must exist with a
matching signature, and the CircularOutput2 behaviour the backend compensates
for (frames leave the buffer only once older than its duration) must still be
what the installed version does.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import firmware.camera.picamera2_backend as backend_module


def _pkg_root() -> Path:
    spec = importlib.util.find_spec("picamera2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("picamera2 sources are not installed (scripts/bootstrap.sh installs them --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


ROOT = _pkg_root()


@dataclass
class Sig:
    params: list[str]          # positional-or-keyword names, without self
    kwonly: list[str]
    varargs: bool
    varkw: bool

    def accepts(self, n_positional: int, keywords: list[str]) -> str | None:
        if n_positional > len(self.params) and not self.varargs:
            return f"takes {len(self.params)} positional arguments, backend passes {n_positional}"
        for kw in keywords:
            if kw not in self.params and kw not in self.kwonly and not self.varkw:
                return f"has no parameter {kw!r} (has {self.params + self.kwonly})"
        return None


def _classes(rel: str) -> dict[str, dict[str, Sig | str]]:
    tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
    out: dict[str, dict[str, Sig | str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members: dict[str, Sig | str] = {"__bases__": ",".join(ast.unparse(b) for b in node.bases)}
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = item.args
                    names = [x.arg for x in a.posonlyargs + a.args][1:]
                    decos = [ast.unparse(d) for d in item.decorator_list]
                    if any(d.endswith(".setter") for d in decos):
                        members[item.name + ".setter"] = "setter"
                        continue
                    if "property" in decos:
                        members[item.name] = "property"
                        continue
                    members[item.name] = Sig(names, [x.arg for x in a.kwonlyargs], a.vararg is not None,
                                             a.kwarg is not None)
            out[node.name] = members
    return out


PICAM = _classes("picamera2.py")
REQUEST = _classes("request.py")
H264 = _classes("encoders/h264_encoder.py")
CIRC2 = _classes("outputs/circularoutput2.py")
PYAV = _classes("outputs/pyavoutput.py")
OUTPUT = _classes("outputs/output.py")

# What the backend calls: constructor / method name -> the installed signature.
CONSTRUCTORS = {
    "Picamera2": PICAM["Picamera2"]["__init__"],
    "H264Encoder": H264["H264Encoder"]["__init__"],
    "CircularOutput2": CIRC2["CircularOutput2"]["__init__"],
    "TimedOutput": PYAV["PyavOutput"]["__init__"],     # subclass of PyavOutput without its own __init__
    "MappedArray": REQUEST["MappedArray"]["__init__"],
}
METHODS = {
    "create_video_configuration": PICAM["Picamera2"]["create_video_configuration"],
    "configure": PICAM["Picamera2"]["configure"],
    "start_encoder": PICAM["Picamera2"]["start_encoder"],
    "stop_encoder": PICAM["Picamera2"]["stop_encoder"],
    "capture_request": PICAM["Picamera2"]["capture_request"],
    "get_metadata": REQUEST["CompletedRequest"]["get_metadata"],
    "make_array": REQUEST["CompletedRequest"]["make_array"],
    "release": REQUEST["CompletedRequest"]["release"],
    "open_output": CIRC2["CircularOutput2"]["open_output"],
    "close_output": CIRC2["CircularOutput2"]["close_output"],
    "outputframe": PYAV["PyavOutput"]["outputframe"],
}


def _backend_calls() -> list[tuple[str, int, list[str], int]]:
    tree = ast.parse(Path(backend_module.__file__).read_text(encoding="utf-8"))
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name:
                calls.append((name, len(node.args), [k.arg for k in node.keywords if k.arg], node.lineno))
    return calls


def test_every_picamera2_call_matches_the_installed_signature():
    checked = set()
    problems = []
    for name, npos, kws, line in _backend_calls():
        sig = CONSTRUCTORS.get(name) or METHODS.get(name)
        if sig is None:
            continue
        assert isinstance(sig, Sig)
        checked.add(name)
        if (err := sig.accepts(npos, kws)) is not None:
            problems.append(f"line {line}: {name}() {err}")
    assert not problems, problems
    # the backend really uses the whole pre-roll chain
    assert {"Picamera2", "H264Encoder", "CircularOutput2", "TimedOutput", "create_video_configuration",
            "start_encoder", "open_output", "close_output", "capture_request", "make_array"} <= checked


def test_the_keywords_the_backend_relies_on_exist():
    cvc = PICAM["Picamera2"]["create_video_configuration"]
    assert {"main", "lores", "transform", "controls", "encode"} <= set(cvc.params)
    assert "buffer_duration_ms" in CIRC2["CircularOutput2"]["__init__"].params
    assert {"bitrate", "repeat", "iperiod"} <= set(H264["H264Encoder"]["__init__"].params)
    assert PYAV["PyavOutput"]["__init__"].params[:2] == ["output_name", "format"]
    assert {"encoder", "output"} <= set(PICAM["Picamera2"]["start_encoder"].params)
    # properties/attributes the backend reads or sets
    assert CIRC2["CircularOutput2"]["buffer_duration_ms"] == "property"
    assert CIRC2["CircularOutput2"]["buffer_duration_ms.setter"] == "setter"
    assert {"start", "stop"} <= set(CIRC2["CircularOutput2"])
    assert CIRC2["CircularOutput2"]["__bases__"] == "Output" and PYAV["PyavOutput"]["__bases__"] == "Output"
    src = (ROOT / "outputs/output.py").read_text()
    assert "self.recording = False" in src                         # Output.recording
    assert "self._output_name = output_name" in (ROOT / "outputs/pyavoutput.py").read_text()
    picam_src = (ROOT / "picamera2.py").read_text()
    assert "self.pre_callback = None" in picam_src and "self.pre_callback(req)" in picam_src
    # pre_callback runs before the encoders see the request, so masks are burned into the video
    assert picam_src.index("self.pre_callback(req)") < picam_src.index("encoder.encode(encoder.name, req)")


def test_exports_the_backend_imports():
    def names(rel: str) -> set[str]:
        tree = ast.parse((ROOT / rel).read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                out |= {a.asname or a.name for a in node.names}
        return out

    assert {"Picamera2", "MappedArray"} <= names("__init__.py")
    assert "H264Encoder" in names("encoders/__init__.py")
    assert {"CircularOutput2", "PyavOutput"} <= names("outputs/__init__.py")


def test_circularoutput2_only_releases_frames_older_than_its_duration():
    """The backend sizes the buffer as pre_roll + one GOP and closes clips buffer_s late because of this."""
    tree = ast.parse((ROOT / "outputs/circularoutput2.py").read_text())
    flush = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_flush")
    text = ast.unparse(flush)
    assert "timestamp_now - timestamp < self.buffer_duration_ms * 1000" in text
    assert "break" in text
    # and the first frame written to a newly opened output is a keyframe
    assert "if keyframe and (not audio)" in text or "if keyframe and not audio" in text


def test_backend_module_imports_without_picamera2_and_fails_clearly(fw_config):
    assert "picamera2" not in sys.modules and "libcamera" not in sys.modules
    from firmware.camera import CameraError, create_camera

    cam = create_camera(fw_config(camera={"backend": "picamera2"}).camera)
    assert cam.encodes_itself
    with pytest.raises(CameraError, match="python3-picamera2"):
        cam.start()


HARNESS = Path(__file__).with_name("picam_outputs_harness.py")


def _barcode_index(gray) -> int:
    return sum(1 << b for b in range(10) if gray[216, 8 + b * 30 + 12] > 128)


@pytest.mark.parametrize("stop_frame,last_expected,sealed", [(200, 90, False), (95, 94, False), (200, 90, True)],
                         ids=["drained-while-running", "flushed-at-shutdown", "sealed"])
def test_clip_store_on_picamera2s_real_circularoutput2_and_pyavoutput(tmp_path, stop_frame, last_expected, sealed):
    """The backend's CircularOutput2/PyavOutput handling, run on picamera2's own output classes.

    Ring at frame 60 (4.0 s), pre-roll 2 s, post-roll 2 s, keyframes every second, 15 fps:
    the MP4 must hold frames 30..90 (drained while the camera runs) or 30..94 when the
    service stops before the buffer drained (CircularOutput2.stop flushes the rest).
    ``sealed``: the same with encryption on (PyavOutput writes a fragmented MP4 into the age writer)."""
    import json
    import subprocess

    import av

    extra = []
    if sealed:
        from doorbell.core import age
        age.save_identity(age.generate_identity(), tmp_path / "owner.txt")
        extra = [str(tmp_path / "owner.txt")]
    out = subprocess.run([sys.executable, str(HARNESS), str(tmp_path / "spool"), "60", str(stop_frame), *extra],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if sealed:
        assert Path(info["sealed_video"]).read_bytes().startswith(b"age-encryption.org/v1\n")
    with av.open(info["video"]) as c:
        frames = [(float(f.time), f.to_ndarray(format="gray")) for f in c.decode(video=0)]
    ids = [_barcode_index(g) for _t, g in frames]
    assert ids == list(range(30, last_expected + 1))            # contiguous, keyframe-aligned start
    times = [t for t, _g in frames]
    assert times[0] == 0.0 and max(abs(b - a - 1 / 15) for a, b in zip(times, times[1:])) < 1e-3
    meta = info["meta"]
    assert meta["trigger_at"] - meta["started_at"] == pytest.approx(2.0, abs=1 / 15 + 1e-6)
    assert meta["ended_at"] == pytest.approx(info["t0"] + (last_expected + 1) / 15, abs=1 / 15 + 1e-6)
    assert meta["rings"] == [info["trigger_ts"]]
