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
    assert _get(bad_sig)[0] == 403
    other_key = urllib.parse.urlunsplit(parts._replace(path=parts.path[:-1] + "x"))
    assert _get(other_key)[0] == 403


def test_expired_presigned_url_is_refused(s3, obj):
    key, _ = obj
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": key}, ExpiresIn=1)
    time.sleep(2.1)
    assert _get(url)[0] == 403


def test_limited_identity_is_confined(s3, obj):
    key, body = obj
    access, secret = "AKRO" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    s3.add_identity("harness-ro", access, secret, [f"Read:{s3.bucket}"])
    ro = s3.client(access, secret)
    assert ro.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body
    with pytest.raises(ClientError) as err:
        ro.put_object(Bucket=s3.bucket, Key="harness/ro-write", Body=b"x")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
