"""Presigned links (botocore SigV4) as a real SeaweedFS checks them."""
from __future__ import annotations

import httpx

from doorbell.core.config import S3Section
from sharing_service.storage import Presigner


def _s3cfg(s3) -> S3Section:  # type: ignore[no-untyped-def]
    return S3Section(endpoint_url=s3.endpoint_url, bucket=s3.bucket, access_key_id=s3.access_key,
                     secret_access_key=s3.secret_key, addressing_style="path")


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
