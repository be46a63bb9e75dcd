"""Short-lived presigned GET links to clip objects: the only way footage leaves storage.

Agencies get links only to opaque copies (:meth:`Presigner.copy_to_shared`, keys from
``doorbell.core.bucket.shared_key``): the copy carries no user metadata and a fixed
content type, so neither the URL nor the S3 server's answer names the home (rule 2).

The service holds the storage credentials; agencies and owners only ever get
SigV4-presigned URLs, which the S3 server itself checks for signature and expiry
(``tests/sharing_service`` checks tampered and expired links against a real SeaweedFS).
Signing is botocore's and happens locally: no network call per link.
"""
from __future__ import annotations

import logging
from typing import Any

from doorbell.core.config import S3Section

log = logging.getLogger(__name__)

MAX_EXPIRES_S = 7 * 86400  # SigV4 limit


SHARED_CONTENT_TYPE = "application/octet-stream"


class Presigner:
    """Makes presigned GET URLs for keys in the configured bucket; never lists, and writes
    only the opaque copies of shared clips (copy, delete)."""

    def __init__(self, s3: S3Section, client: Any | None = None):
        self.bucket = s3.bucket
        if client is None:
            import boto3
            from botocore.config import Config

            secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
            client = boto3.client(
                "s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                aws_access_key_id=s3.access_key_id, aws_secret_access_key=secret,
                config=Config(signature_version="s3v4", s3={"addressing_style": s3.addressing_style}),
            )
        self._client = client

    def get_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        """A GET URL for ``key`` valid ``ttl_s`` seconds."""
        ttl_s = max(1, min(int(ttl_s), MAX_EXPIRES_S))
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s))

    def copy_to_shared(self, src: str, dst: str) -> None:
        """Server-side copy (S3 CopyObject: no footage passes through the service) to an opaque key.

        ``MetadataDirective=REPLACE`` with no metadata: the device's ``x-amz-meta-*``
        headers, content type and tags stay behind with the original.
        """
        self._client.copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                                 MetadataDirective="REPLACE", ContentType=SHARED_CONTENT_TYPE,
                                 TaggingDirective="REPLACE", Tagging="")

    def delete(self, key: str) -> None:
        """Delete one object (a missing one is not an error: S3 answers 204 either way)."""
        self._client.delete_object(Bucket=self.bucket, Key=key)
