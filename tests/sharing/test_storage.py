"""The service's own SigV4 presigner: identical to botocore's, accepted by a real SeaweedFS."""
from __future__ import annotations

import calendar
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from doorbell.config import S3Section
from sharing_service.storage import Presigner


def _s3cfg(s3) -> S3Section:  # type: ignore[no-untyped-def]
    return S3Section(endpoint_url=s3.endpoint_url, bucket=s3.bucket, access_key_id=s3.access_key,
                     secret_access_key=s3.secret_key, addressing_style="path")


def test_presigner_matches_botocore(s3) -> None:  # type: ignore[no-untyped-def]
    fast = Presigner(_s3cfg(s3))
    boto = Presigner(_s3cfg(s3), client=s3.client())
    for key, name in (("clips/dev-a/20261123T101010123Z-abcdef.mp4", "x.mp4"),
                      ("odd key/with spaces+plus&amp=/é.mp4", None)):
        ref = boto.get_url(key, 300, filename=name)
        q = parse_qs(urlsplit(ref).query)
        when = calendar.timegm(time.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
        mine = fast.get_url(key, 300, filename=name, now=when)
        assert urlsplit(mine).path == urlsplit(ref).path
        assert parse_qs(urlsplit(mine).query) == q


def test_presigned_links_work_on_seaweedfs(s3) -> None:  # type: ignore[no-untyped-def]
    key = "clips/dev-a/odd name+1.mp4"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"footage")
    url = Presigner(_s3cfg(s3)).get_url(key, 60, filename="clip.mp4")
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"footage"
    assert "attachment" in r.headers.get("content-disposition", "")
    other = Presigner(S3Section(endpoint_url=s3.endpoint_url, bucket=s3.bucket, access_key_id=s3.access_key,
                                secret_access_key="wrong-secret-123", addressing_style="path"))
    assert httpx.get(other.get_url(key, 60)).status_code == 403
