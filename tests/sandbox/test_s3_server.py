"""The test S3 is a real SeaweedFS that checks signatures, expiry and permissions."""
from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def obj(s3):
    key = f"harness/{secrets.token_hex(6)}.bin"
    body = secrets.token_bytes(2048)
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=body)
    return key, body


def test_presigned_get_works(s3, obj):
    key, body = obj
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": key}, ExpiresIn=60)
    assert _get(url) == (200, body)


def test_tampered_presigned_url_is_refused(s3, obj):
    key, _ = obj
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": key}, ExpiresIn=60)
    parts = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(parts.query))
    sig = q["X-Amz-Signature"]
    q["X-Amz-Signature"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    bad_sig = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))
    status, body = _get(bad_sig)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    # the same signature for another object (a guessed key) is refused too
    other_key = urllib.parse.urlunsplit(parts._replace(path=parts.path[:-1] + "x"))
    status, body = _get(other_key)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    # and so is stretching the expiry
    q = dict(urllib.parse.parse_qsl(parts.query))
    q["X-Amz-Expires"] = "3600"
    longer = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))
    assert _get(longer)[0] == 403


def test_expired_presigned_url_is_refused(s3, obj):
    key, _ = obj
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": key}, ExpiresIn=1)
    time.sleep(2.1)
    status, body = _get(url)
    assert status == 403 and b"Request has expired" in body


def test_presigned_url_longer_than_a_week_is_refused(s3, obj):
    key, _ = obj
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": key},
                                             ExpiresIn=7 * 86400 + 1)
    status, body = _get(url)
    assert status == 400 and b"AuthorizationQueryParametersError" in body


def test_limited_identity_is_confined(s3, obj):
    key, body = obj
    access, secret = "AKRO" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    s3.add_identity("harness-ro", access, secret, [f"Read:{s3.bucket}"])
    ro = s3.client(access, secret)
    assert ro.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body
    with pytest.raises(ClientError) as err:
        ro.put_object(Bucket=s3.bucket, Key="harness/ro-write", Body=b"x")
    assert err.value.response["Error"]["Code"] == "AccessDenied"


def _b64sha256(data: bytes) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_multipart_upload_with_sha256_checksums_round_trips(s3):
    import base64
    import hashlib

    c = s3.client()
    key = f"harness/mp-{secrets.token_hex(4)}.mp4"
    parts = [secrets.token_bytes(5 * 1024 * 1024), secrets.token_bytes(300 * 1024)]
    up = c.create_multipart_upload(Bucket=s3.bucket, Key=key, ChecksumAlgorithm="SHA256")
    done = []
    for n, data in enumerate(parts, 1):
        r = c.upload_part(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                          Body=data, ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == _b64sha256(data)  # the server computed the same digest
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    r = c.complete_multipart_upload(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": done})
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert r["ChecksumSHA256"] == f"{base64.b64encode(composite).decode()}-{len(parts)}"
    got = c.get_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
    assert got["ChecksumSHA256"] == r["ChecksumSHA256"]


def test_wrong_checksums_are_refused_with_bad_digest(s3):
    c = s3.client()
    key = f"harness/bad-{secrets.token_hex(4)}"
    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=s3.bucket, Key=key, Body=b"clip bytes", ChecksumSHA256=_b64sha256(b"other bytes"))
    assert err.value.response["Error"]["Code"] == "BadDigest"
    import base64
    import hashlib

    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=s3.bucket, Key=key, Body=b"clip bytes",
                     ContentMD5=base64.b64encode(hashlib.md5(b"other bytes").digest()).decode())
    assert err.value.response["Error"]["Code"] == "BadDigest"
    up = c.create_multipart_upload(Bucket=s3.bucket, Key=key, ChecksumAlgorithm="SHA256")
    try:
        with pytest.raises(ClientError) as err:
            c.upload_part(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], PartNumber=1,
                          Body=b"part bytes", ChecksumSHA256=_b64sha256(b"not these"))
        assert err.value.response["Error"]["Code"] == "BadDigest"
        r = c.upload_part(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], PartNumber=1,
                          Body=b"part bytes", ChecksumAlgorithm="SHA256")
        with pytest.raises(ClientError) as err:
            c.complete_multipart_upload(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumSHA256": _b64sha256(b"forged")}]})
        assert err.value.response["Error"]["Code"] == "BadDigest"
    finally:
        c.abort_multipart_upload(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"])
    with pytest.raises(ClientError) as err:
        c.head_object(Bucket=s3.bucket, Key=key)
    assert err.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_device_identity_writes_only_under_its_prefix(s3, obj):
    key, _ = obj
    access, secret = "AKDEV" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    s3.add_identity("harness-dev", access, secret, [f"Write:{s3.bucket}/hx-dev/*"])
    dev = s3.client(access, secret)
    dev.put_object(Bucket=s3.bucket, Key="hx-dev/clip.mp4", Body=b"mine")
    for call in (lambda: dev.put_object(Bucket=s3.bucket, Key="hx-other/clip.mp4", Body=b"x"),
                 lambda: dev.get_object(Bucket=s3.bucket, Key="hx-dev/clip.mp4"),
                 lambda: dev.get_object(Bucket=s3.bucket, Key=key),
                 lambda: dev.list_objects_v2(Bucket=s3.bucket)):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"
    s3.remove_identity("harness-dev")
    with pytest.raises(ClientError) as err:
        dev.put_object(Bucket=s3.bucket, Key="hx-dev/clip2.mp4", Body=b"mine")
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_read_only_identity_cannot_list_or_delete(s3, s3_identity, obj):
    key, body = obj
    ident = s3_identity([f"Read:{s3.bucket}"])
    ro = s3.client(ident.access_key, ident.secret_key)
    assert ro.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body
    for call in (lambda: ro.list_objects_v2(Bucket=s3.bucket),
                 lambda: ro.delete_object(Bucket=s3.bucket, Key=key)):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_wrong_secret_is_refused(s3):
    with pytest.raises(ClientError) as err:
        s3.client(s3.access_key, "not-the-secret").list_objects_v2(Bucket=s3.bucket)
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_objects_survive_stop_and_start(s3, obj):
    key, body = obj
    endpoint = s3.endpoint_url
    s3.stop()
    assert not s3.running
    s3.start()
    assert s3.endpoint_url == endpoint
    assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body


def test_a_test_may_leave_s3_stopped(s3):
    s3.stop()  # the autouse fixture starts it again before the next test


def test_s3_is_back_after_a_test_stopped_it(s3):
    assert s3.running
    s3.client().head_bucket(Bucket=s3.bucket)


def test_https_endpoint_with_verified_certificate(tmp_path, tls_files):
    import ssl

    from doorbell.sandbox.embedded import SeaweedS3

    with SeaweedS3(tmp_path / "s3", "AKTLS" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24),
                   tls=tls_files) as server:
        assert server.https_endpoint_url.startswith("https://127.0.0.1:")
        c = server.client(https=True)
        c.put_object(Bucket=server.bucket, Key="tls/clip", Body=b"over tls")
        assert c.get_object(Bucket=server.bucket, Key="tls/clip")["Body"].read() == b"over tls"
        url = c.generate_presigned_url("get_object", Params={"Bucket": server.bucket, "Key": "tls/clip"},
                                       ExpiresIn=60)
        ctx = ssl.create_default_context(cafile=str(tls_files.cafile))
        with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
            assert resp.read() == b"over tls"
        with pytest.raises(urllib.error.URLError):  # an unknown CA is not trusted
            urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context())
