"""Consent releases keys: re-wrapped headers for an agency, checked against the signed decision.

Real sealed clips from the spool; the agency's side is checked with our decrypt
and with the stock ``age`` CLI; attacks use the owner's and devices' real keys.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from doorbell.core import age, protocol, release, signing
from doorbell.core.manifest import ManifestError
from doorbell.core.spool import SEALED_FILES, Sealing, Spool

META = {"device_id": "dev-a", "trigger": "ring", "pre_roll_s": 4.0, "duration_s": 10.0}
RID = "3f2b9c1e0a7d4e5f8a9b0c1d2e3f4a5b"


def sealed_clip(spool: Spool, seal: Sealing, video: bytes, snapshot: bytes) -> tuple[str, Path]:
    t = time.time()
    st = spool.stage_clip(ts=t, sealing=seal)
    sink = st.open_video()
    sink.write(video)
    st.write_snapshot(snapshot)
    clip = st.publish(**dict(META, started_at=t, ended_at=t + 10, trigger_at=t + 4))
    return clip.clip_id, spool.get_clip(clip.clip_id).path


def sources(path: Path) -> dict[str, release.SealedSource]:
    out = {}
    for kind in release.RELEASED_KINDS:
        with (path / SEALED_FILES[kind]).open("rb") as fh:
            header, _ = age.header_and_payload_offset(fh)
        out[kind] = release.SealedSource(key=f"devices/dev-a/o/x/{kind[0]}", header=header)
    return out


@pytest.fixture
def household(tmp_spool):
    owner_id, device_key = age.generate_identity(), signing.generate_key()
    seal = Sealing((owner_id.recipient,), device_key)
    a = sealed_clip(tmp_spool, seal, bytes(range(256)) * 800, b"\xff\xd8\xff" + b"a" * 500)
    b = sealed_clip(tmp_spool, seal, bytes(range(255, -1, -1)) * 300, b"\xff\xd8\xff" + b"b" * 500)
    return owner_id, device_key, a, b


def approve(owner_key, clips, owner_id_key, agency_recipient):
    rel = release.build_release({c: sources(p) for c, p in clips}, [owner_id_key], agency_recipient)
    return signing.sign_decision(owner_key, owner_id="owner-a", request_id=RID, approve=True,
                                 clip_ids=[c for c, _ in clips], grant_days=7, release=rel)


def assemble(path: Path, kind: str, header: bytes, offset: int) -> io.BytesIO:
    data = (path / SEALED_FILES[kind]).read_bytes()
    return io.BytesIO(data[offset:])


def test_the_agency_opens_exactly_the_released_clip_and_it_verifies(household, tmp_path):
    owner_age, device_key, (cid_a, path_a), (cid_b, path_b) = household
    agency = age.generate_identity()
    owner_key = signing.generate_key()
    decision = approve(owner_key, [(cid_a, path_a)], owner_age, str(agency.recipient))
    # On the wire and back: the signature covers the header digests, not the (unsigned) headers.
    decision = protocol.decode(protocol.Decision, decision.to_json(), "decision")
    signing.verify(decision, signing.public_key_text(owner_key))
    headers = release.check_headers(decision)
    assert set(headers) == {cid_a}
    files = {}
    for kind in release.RELEASED_KINDS:
        obj = decision.released[cid_a][kind]
        files[kind] = tmp_path / kind
        release.open_released(headers[cid_a][kind], assemble(path_a, kind, headers[cid_a][kind], obj.payload_offset),
                              files[kind], [agency], obj.header_sha256)
    m = release.verify_released({"video": files["video"], "snapshot": files["snapshot"]}, files["manifest"],
                                signing.public_key_text(device_key))
    assert m.clip_id == cid_a
    assert files["video"].read_bytes() == bytes(range(256)) * 800
    # The same header + payload bytes open with the stock age CLI and the agency's identity file.
    age_bin = shutil.which("age")
    if age_bin:
        key_file = tmp_path / "agency-key.txt"
        age.save_identity(agency, key_file)
        joined = tmp_path / "video.age"
        obj = decision.released[cid_a]["video"]
        joined.write_bytes(headers[cid_a]["video"] + (path_a / SEALED_FILES["video"]).read_bytes()[obj.payload_offset:])
        out = subprocess.run([age_bin, "-d", "-i", str(key_file), str(joined)], capture_output=True, check=True)
        assert out.stdout == files["video"].read_bytes()
    # The unreleased clip stays shut for the agency, whatever header it borrows.
    with pytest.raises(age.AgeError):
        release.open_released(headers[cid_a]["video"],
                              assemble(path_b, "video", b"", len(sources(path_b)["video"].header)),
                              tmp_path / "b.mp4", [agency])
    assert not (tmp_path / "b.mp4").exists() and not (tmp_path / "b.mp4.part").exists()
    with (path_b / SEALED_FILES["video"]).open("rb") as fh, pytest.raises(age.NoIdentityMatchError):
        age.decrypt(fh, io.BytesIO(), [agency])


def test_a_header_swapped_in_from_another_clip_fails_the_signed_decision_check(household):
    owner_age, _device_key, (cid_a, path_a), (cid_b, path_b) = household
    agency = age.generate_identity()
    owner_key = signing.generate_key()
    decision = approve(owner_key, [(cid_a, path_a), (cid_b, path_b)], owner_age, str(agency.recipient))
    swapped = decision.model_dump(mode="json", exclude_none=True)
    swapped["headers"][cid_a]["video"] = swapped["headers"][cid_b]["video"]  # still a valid header for the agency
    forged = protocol.Decision.model_validate(swapped)
    signing.verify(forged, signing.public_key_text(owner_key))  # the headers are outside the signature...
    with pytest.raises(release.ReleaseError, match="not the one the owner signed"):
        release.check_headers(forged)  # ...but bound by the signed digests
    # Changing the signed digest to match instead breaks the signature.
    swapped["released"][cid_a]["video"]["header_sha256"] = decision.released[cid_b]["video"].header_sha256
    with pytest.raises(signing.SignatureError):
        signing.verify(protocol.Decision.model_validate(swapped), signing.public_key_text(owner_key))
    # So does pointing the release at another recipient (the service swapping the agency's key).
    other = dict(decision.model_dump(mode="json", exclude_none=True),
                 agency_recipient=str(age.generate_identity().recipient))
    with pytest.raises(signing.SignatureError):
        signing.verify(protocol.Decision.model_validate(other), signing.public_key_text(owner_key))


def test_a_clip_signed_by_another_device_fails_verification(household, tmp_path, tmp_spool):
    owner_age, device_key, (cid_a, path_a), _b = household
    impostor = Sealing((owner_age.recipient,), signing.generate_key())
    cid_x, path_x = sealed_clip(tmp_spool, impostor, b"forged" * 10000, b"\xff\xd8\xffx")
    agency = age.generate_identity()
    decision = approve(signing.generate_key(), [(cid_x, path_x)], owner_age, str(agency.recipient))
    headers = release.check_headers(decision)
    files = {}
    for kind in ("video", "manifest"):
        obj = decision.released[cid_x][kind]
        files[kind] = tmp_path / kind
        release.open_released(headers[cid_x][kind], assemble(path_x, kind, b"", obj.payload_offset), files[kind],
                              [agency])
    with pytest.raises(signing.SignatureError):
        release.verify_released({"video": files["video"]}, files["manifest"], signing.public_key_text(device_key))
    # A genuine manifest with another clip's video is refused too.
    decision = approve(signing.generate_key(), [(cid_a, path_a)], owner_age, str(agency.recipient))
    headers = release.check_headers(decision)
    obj = decision.released[cid_a]["manifest"]
    release.open_released(headers[cid_a]["manifest"], assemble(path_a, "manifest", b"", obj.payload_offset),
                          tmp_path / "genuine", [agency])
    with pytest.raises((release.ReleaseError, ManifestError)):
        release.verify_released({"video": files["video"]}, tmp_path / "genuine", signing.public_key_text(device_key))


def test_v1_decisions_sign_as_before_and_a_release_is_well_formed(household):
    owner_age, _k, (cid_a, path_a), _b = household
    key = signing.generate_key()
    plain = signing.sign_decision(key, owner_id="owner-a", request_id=RID, approve=True, clip_ids=[cid_a])
    assert b"released" not in signing.signing_bytes(plain) and b"agency_recipient" not in signing.signing_bytes(plain)
    rel = release.build_release({cid_a: sources(path_a)}, [owner_age], str(age.generate_identity().recipient))
    good = signing.sign_decision(key, owner_id="owner-a", request_id=RID, approve=True, clip_ids=[cid_a], release=rel)
    body = good.model_dump(mode="json", exclude_none=True)
    for broken in ({**body, "headers": None}, {**body, "clip_ids": []},
                   {**body, "released": {cid_a: {"video": body["released"][cid_a]["video"]}}}):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(protocol.Decision, json.dumps({k: v for k, v in broken.items() if v is not None}),
                            "decision")
    # An owner identity that is not a recipient cannot release anything.
    with pytest.raises(age.NoIdentityMatchError):
        release.build_release({cid_a: sources(path_a)}, [age.generate_identity()],
                              str(age.generate_identity().recipient))
