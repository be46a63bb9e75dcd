"""The agent's S3-only endpoint table: built once in a child process, cached, and resolving
every partition exactly as botocore's full table does (no servers needed)."""
from __future__ import annotations

import boto3

from cloud_agent import endpoints
from cloud_agent.uploader import _lean_session

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"]


def _urls(session: boto3.session.Session) -> list[tuple[str, str]]:
    out = []
    for region in REGIONS:
        c = session.client("s3", region_name=region, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x" * 20)
        url = c.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"}, ExpiresIn=60)
        out.append((c.meta.endpoint_url, url.split("?")[0]))
    return out


def test_cached_s3_table_resolves_like_botocores_full_table(tmp_path):
    cache = endpoints.cache_path(tmp_path)
    first = _lean_session(tmp_path)
    assert cache.is_file() and cache.stat().st_size < 200_000  # the full table is 1.2 MB
    data = endpoints.s3_endpoints(tmp_path, loader=None)  # from the cache: the loader is not touched
    assert all(set(p["services"]) == {"s3"} for p in data["partitions"])
    second = _lean_session(tmp_path)
    assert _urls(first) == _urls(second) == _urls(boto3.session.Session())


def test_unwritable_cache_falls_back_to_parsing_here(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    session = _lean_session(blocker / "cache")  # the child cannot create the cache
    assert not endpoints.cache_path(blocker / "cache").exists()
    assert _urls(session) == _urls(boto3.session.Session())
