"""Clip uploads to any S3-compatible bucket: verified, idempotent, never overwriting.

For each clip the uploader:

1. hashes every local file in one pass (whole-file SHA-256 plus the per-part
   digests a multipart upload will produce) and refuses a file whose hash does
   not match the spool metadata (:class:`LocalCorruption`);
2. uploads video and snapshot in parallel, then the metadata JSON (last, so
   its presence means the clip is complete), through s3transfer with the
   configured ``TransferConfig`` (threshold, part size, concurrency, bandwidth
   cap), sending SHA-256 checksums the server verifies on receipt (the
   whole-object value for a single PUT, one per part for multipart) and the
   file's hash as ``x-amz-meta-sha256``;
3. never overwrites: every PUT and CompleteMultipartUpload carries
   ``If-None-Match: *``, so the bucket itself refuses to replace an existing
   key (412). Such a key, and every key on a retry or after a crash (or always,
   with ``agent.conditional_writes: false``), is HEADed: the same
   ``x-amz-meta-sha256`` and size means an earlier attempt already stored it
   (skip); anything else is an :class:`UploadConflict` and stays untouched;
4. HEADs each new object with ``ChecksumMode=ENABLED`` and compares size,
   metadata and the server's SHA-256 (full, or composite ``-N`` for multipart)
   with the local digests. Only then is the clip reported uploaded.

Crash safety: before the first byte goes out the clip is journaled
(atomically) in ``agent.state_dir/upload-journal/``, with every multipart
upload id as soon as S3 hands it out. A retry or a restart that finds the
journal aborts the multipart uploads left under the clip's keys and starts
again, so a kill -9 mid upload leaves neither a duplicate nor a half object (an
incomplete multipart upload is invisible until completed). At start-up
:meth:`Uploader.recover` also clears every stale multipart upload under the
device's prefix.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from s3transfer.exceptions import CancelledError
from s3transfer.utils import ChunksizeAdjuster

from cloud_agent.memory import shrink_botocore_buffers
from doorbell.core.bucket import ClipKeys, clip_keys, device_prefix, sealed_keys
from doorbell.core.config import S3Section
from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write
from doorbell.core.spool import SpoolClip

log = logging.getLogger(__name__)

MiB = 1024 * 1024
JOURNAL_DIR = "upload-journal"  # one {clip_id}.json per clip being uploaded
CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".json": "application/json"}


class UploadConflict(DoorbellError):
    """The bucket holds a different object under our key; it is never overwritten."""


class LocalCorruption(DoorbellError):
    """A spool file no longer matches the hash recorded when it was published."""


class UploadCancelled(DoorbellError):
    """The agent is shutting down; the clip stays pending and is retried next start."""


@dataclass(frozen=True)
class FileDigest:
    sha256_hex: str
    size: int
    part_digests: tuple[bytes, ...]
    part_size: int

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode()

    def composite_b64(self) -> str:
        """S3's checksum of a multipart object: SHA-256 of the parts' SHA-256 digests."""
        return base64.b64encode(hashlib.sha256(b"".join(self.part_digests)).digest()).decode()


@dataclass
class _Object:
    """One local file on its way to one key."""

    path: Path
    key: str
    digest: FileDigest
    skip: bool = False
    preexisting: bool = False


@dataclass
class UploadOutcome:
    clip_id: str
    keys: ClipKeys
    snapshot_key: str | None
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0


def digest_file(path: Path, part_size: int, block: int = 256 * 1024) -> FileDigest:
    """Whole-file SHA-256 and per-part SHA-256 digests in a single read.

    Reads ``block`` bytes at a time (not a whole part) so hashing a clip never
    holds more than 256 KiB of it in memory: RSS matters on a Pi Zero.
    """
    whole = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    buf = bytearray(block)
    view = memoryview(buf)
    part = hashlib.sha256()
    in_part = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            want = min(block, part_size - in_part)
            n = fh.readinto(view[:want])
            if not n:
                break
            chunk = view[:n]
            whole.update(chunk)
            part.update(chunk)
            in_part += n
            size += n
            if in_part == part_size:
                parts.append(part.digest())
                part = hashlib.sha256()
                in_part = 0
    if in_part or not parts:
        parts.append(part.digest())
    return FileDigest(whole.hexdigest(), size, tuple(parts), part_size)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Uploader:
    """Uploads spool clips to one bucket; one instance per agent, used from one thread."""

    def __init__(self, s3: S3Section, device_id: str, state_dir: Path, conditional_writes: bool = True,
                 client: Any = None):
        self.cfg = s3
        self.device_id = device_id
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # full disk: the journal falls back to memory (see _write_journal)
            log.warning("cannot create %s: %s", self.state_dir, exc)
        # Journals that could not be written (full disk): kept here so a retry in this process
        # still aborts what it left; after a crash, recover()'s sweep of the prefix does that.
        self._mem_journals: dict[str, dict[str, Any]] = {}
        self._journal_degraded = False
        self.bucket = s3.bucket
        shrink_botocore_buffers()
        self.client = client or _lean_session(self.state_dir / "cache").client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name=s3.region,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key.get_secret_value() if s3.secret_access_key else None,
            config=BotoConfig(
                s3={"addressing_style": s3.addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=max(10, s3.max_concurrency + 2),
                request_checksum_calculation="when_supported",
                response_checksum_validation="when_supported",
            ),
        )
        # Per-part SHA-256 values we already computed while hashing the file: handing them to
        # UploadPart spares botocore hashing every byte again (the server still verifies them).
        self._part_sums: dict[str, tuple[str, ...]] = {}
        self._key_clip: dict[str, str] = {}  # object key -> clip id (sealed keys do not name the clip)
        self.client.meta.events.register("before-parameter-build.s3.UploadPart", self._add_part_checksum)
        if conditional_writes:
            # s3transfer does not pass IfNoneMatch through, so add it on the wire.
            for op in ("PutObject", "CompleteMultipartUpload"):
                self.client.meta.events.register(f"before-parameter-build.s3.{op}", _if_none_match)
        self.transfer_config = TransferConfig(
            multipart_threshold=s3.multipart_threshold_mb * MiB,
            multipart_chunksize=s3.multipart_chunk_mb * MiB,
            max_concurrency=s3.max_concurrency,
            max_bandwidth=s3.max_upload_bytes_per_s,
            use_threads=True,
        )
        # Submission threads only queue part tasks; s3transfer's default of 5 just costs memory.
        self.transfer_config.max_submission_concurrency = 2
        self._manager = create_transfer_manager(self.client, self.transfer_config)
        self.conditional_writes = conditional_writes
        self._journal_lock = threading.Lock()
        self._completing = threading.local()
        self.client.meta.events.register("after-call.s3.CreateMultipartUpload", self._on_multipart_created)
        self.client.meta.events.register("before-call.s3.CompleteMultipartUpload", self._on_multipart_completing)
        self.client.meta.events.register("after-call.s3.CompleteMultipartUpload", self._on_multipart_completed)
        self._future_lock = threading.Lock()
        self._futures: set[Any] = set()
        self._cancelled = threading.Event()

    # ------------------------------------------------------------------ public
    def keys_for(self, clip: SpoolClip) -> ClipKeys:
        """The clip's keys; for a sealed clip ``meta`` is its manifest, the object uploaded last."""
        if clip.sealed is not None:
            sk = sealed_keys(self.cfg.prefix, self.device_id, clip.sealed.object_id)
            return ClipKeys(video=sk["video"], snapshot=sk["snapshot"], meta=sk["manifest"])
        return clip_keys(self.cfg.prefix, self.device_id, clip.clip_id, clip.clear.started_at)

    def upload_clip(self, clip: SpoolClip) -> UploadOutcome:
        """Upload video and snapshot (in parallel), then the metadata; return once the bucket confirmed all.

        The metadata object goes last, so its presence means the clip is complete.
        """
        try:
            return self._upload_clip(clip)
        except (UploadConflict, LocalCorruption):
            self._clear_journal(clip.clip_id)  # the clip leaves the queue; nothing of it to resume
            raise

    def _upload_clip(self, clip: SpoolClip) -> UploadOutcome:
        t0 = time.monotonic()
        keys = self.keys_for(clip)
        out = UploadOutcome(clip.clip_id, keys, None)
        sealed = clip.sealed
        if sealed is not None:
            # Sealed: the age files go up as they are (checked against the ciphertext SHA-256 the firmware
            # recorded); the signed manifest goes last. The clear meta.json never leaves the device.
            sk = sealed_keys(self.cfg.prefix, self.device_id, sealed.object_id)
            objects = [self._prepare(clip.path / f.name, sk[kind], f.sha256, f.size)
                       for kind, f in sealed.files.items() if kind != "manifest"]
            if "snapshot" in sealed.files:
                out.snapshot_key = keys.snapshot
            m = sealed.files["manifest"]
            last = self._prepare(clip.path / m.name, sk["manifest"], m.sha256, m.size)
            sweep = keys.video.rsplit("/", 1)[0] + "/"
        else:
            meta = clip.clear
            objects = [self._prepare(clip.video, keys.video, meta.sha256, meta.size)]
            snap = clip.snapshot
            if snap is not None:
                objects.append(self._prepare(snap, keys.snapshot, meta.snapshot_sha256, None))
                out.snapshot_key = keys.snapshot
            last = self._prepare(clip.meta_file, keys.meta, None, None)
            sweep = keys.video[: -len(".mp4")] + "."
        for obj in objects + [last]:
            self._key_clip[obj.key] = clip.clip_id
        journal = self._read_journal(clip.clip_id)
        retry = journal is not None
        if journal is not None:
            # A previous attempt at this clip failed or was killed: clear its unfinished parts.
            self._abort_journaled(journal)
            self._sweep(sweep)
        if retry or not self.conditional_writes:
            # Without If-None-Match the bucket cannot refuse an overwrite, and after a crash
            # the objects may already be there: look before writing.
            for obj in objects + [last]:
                existing = self.head(obj.key)
                if existing is not None:
                    self._check_existing(existing, obj, strict=False)
                    log.info("%s already in the bucket with the same sha256; not uploading again", obj.key)
                    obj.skip = True
                    out.skipped.append(obj.key)
        self._write_journal(clip.clip_id, {"clip_id": clip.clip_id, "key": keys.video, "started": time.time(),
                                           "uploads": []})
        self._transfer([o for o in objects if not o.skip], out)
        if not last.skip:
            self._transfer([last], out)
        self._clear_journal(clip.clip_id)
        for obj in objects + [last]:
            self._key_clip.pop(obj.key, None)
        out.seconds = time.monotonic() - t0
        return out

    def abort_stale(self, prefix: str | None = None) -> int:
        """Abort every unfinished multipart upload under ``prefix`` (default: this device's)."""
        prefix = device_prefix(self.cfg.prefix, self.device_id) if prefix is None else prefix
        aborted = 0
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            for up in page.get("Uploads", []) or []:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    aborted += 1
                    log.warning("aborted stale multipart upload of %s (%s)", up["Key"], up["UploadId"][:12])
                except ClientError as exc:
                    if _error_code(exc) not in ("NoSuchUpload", "404"):
                        raise
        return aborted

    def recover(self) -> int:
        """Start-up: abort what an interrupted run left (it restarts) and sweep stale multipart uploads."""
        n = 0
        for clip_id, journal in self._journals():
            log.warning("previous run was interrupted while uploading %s; restarting that upload",
                        journal.get("key") or clip_id)
            n += self._abort_journaled(journal)
        return n + self._sweep(None)

    def _sweep(self, prefix: str | None) -> int:
        """abort_stale, tolerating credentials that may not list multipart uploads (AWS
        ``s3:ListBucketMultipartUploads``): journaled upload ids are aborted anyway."""
        try:
            return self.abort_stale(prefix)
        except ClientError as exc:
            if _error_code(exc) not in ("AccessDenied", "403", "NotImplemented"):
                raise
            log.info("cannot list multipart uploads (%s); relying on the upload journal", _error_code(exc))
            return 0

    def _abort_journaled(self, journal: dict[str, Any]) -> int:
        n = 0
        for up in journal.get("uploads") or []:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["key"], UploadId=up["upload_id"])
                n += 1
                log.warning("aborted interrupted multipart upload of %s", up["key"])
            except ClientError as exc:
                if _error_code(exc) not in ("NoSuchUpload", "404"):
                    raise
            except (KeyError, TypeError):
                continue
        return n

    def _add_part_checksum(self, params: dict[str, Any] | None = None, **_kw: Any) -> None:
        if not params or "ChecksumSHA256" in params:
            return
        sums = self._part_sums.get(params.get("Key", ""))
        number = params.get("PartNumber")
        if sums and isinstance(number, int) and 1 <= number <= len(sums):
            params["ChecksumSHA256"] = sums[number - 1]

    def _on_multipart_completing(self, params: dict[str, Any] | None = None, **_kw: Any) -> None:
        # Remember which upload the CompleteMultipartUpload on this thread finishes.
        self._completing.upload_id = ((params or {}).get("query_string") or {}).get("uploadId")

    def _on_multipart_completed(self, http_response: Any = None, **_kw: Any) -> None:
        """A completed upload id must not be aborted later: drop it from the journal."""
        upload_id = getattr(self._completing, "upload_id", None)
        if not upload_id or http_response is None or http_response.status_code != 200:
            return
        with self._journal_lock:
            for clip_id, journal in self._journals():
                ups = journal.get("uploads") or []
                if any(u.get("upload_id") == upload_id for u in ups):
                    journal["uploads"] = [u for u in ups if u.get("upload_id") != upload_id]
                    self._write_journal(clip_id, journal)

    def _on_multipart_created(self, parsed: dict[str, Any] | None = None, **_kw: Any) -> None:
        """Journal each multipart upload id the moment S3 hands it out (s3transfer keeps it private),
        so a restart can abort it with ``s3:AbortMultipartUpload`` alone."""
        if not parsed or "UploadId" not in parsed or "Key" not in parsed:
            return
        clip_id = self._key_clip.get(str(parsed["Key"])) or str(parsed["Key"]).rsplit("/", 1)[-1].rsplit(".", 1)[0]
        with self._journal_lock:
            journal = self._read_journal(clip_id) or {"clip_id": clip_id}
            journal.setdefault("uploads", []).append({"key": parsed["Key"], "upload_id": parsed["UploadId"]})
            self._write_journal(clip_id, journal)

    def cancel(self) -> None:
        """Called from another thread at shutdown: stop the uploads in flight (they will be retried)."""
        self._cancelled.set()
        with self._future_lock:
            for future in list(self._futures):
                future.cancel()

    def renew_transfers(self) -> None:
        """A fresh transfer manager, after a failed upload and once nothing is in flight.

        s3transfer's bandwidth limiter (``s3.max_upload_bytes_per_s``) keeps the
        wait it scheduled for a request that then failed (the bucket went away
        mid-part) for the rest of the manager's life, so every later upload ran
        slower than the cap: 15 MB took 19 s instead of 4 s after a bucket outage.
        """
        with self._future_lock:
            old, self._manager = self._manager, create_transfer_manager(self.client, self.transfer_config)
        try:
            old.shutdown()
        except Exception:  # the old manager's failed transfers must not stop the retry
            log.debug("shutting down the previous transfer manager failed", exc_info=True)

    def close(self) -> None:
        try:
            self._manager.shutdown(cancel=True)
        except Exception:  # shutting down a pool of a dead transfer must not mask the real exit
            log.debug("transfer manager shutdown failed", exc_info=True)

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    # ------------------------------------------------------------------ objects
    def _part_size(self, size: int) -> int:
        return ChunksizeAdjuster().adjust_chunksize(self.transfer_config.multipart_chunksize, size)

    def _is_multipart(self, size: int) -> bool:
        return size >= self.transfer_config.multipart_threshold

    def _prepare(self, path: Path, key: str, want_sha: str | None, want_size: int | None) -> _Object:
        """Hash a local file and check it against the spool metadata (LocalCorruption if it differs)."""
        size = path.stat().st_size
        digest = digest_file(path, self._part_size(size))
        if want_sha is not None and digest.sha256_hex != want_sha:
            raise LocalCorruption(f"{path}: sha256 {digest.sha256_hex[:12]}… "
                                  f"differs from the recorded {want_sha[:12]}…")
        if want_size is not None and digest.size != want_size:
            raise LocalCorruption(f"{path}: {digest.size} bytes, metadata says {want_size}")
        return _Object(path, key, digest)

    def _transfer(self, objects: list[_Object], out: UploadOutcome) -> None:
        """Upload ``objects`` concurrently, then HEAD each to verify what the bucket stored."""
        futures = []
        with self._future_lock:
            if self._cancelled.is_set():
                raise UploadCancelled(out.clip_id)
            for obj in objects:
                extra: dict[str, Any] = {
                    "ChecksumAlgorithm": "SHA256",
                    "Metadata": {"sha256": obj.digest.sha256_hex},
                    "ContentType": CONTENT_TYPES.get(obj.path.suffix, "application/octet-stream"),
                }
                if not self._is_multipart(obj.digest.size):
                    extra["ChecksumSHA256"] = obj.digest.sha256_b64  # the server checks the whole object
                else:
                    self._part_sums[obj.key] = tuple(base64.b64encode(d).decode() for d in obj.digest.part_digests)
                futures.append(self._manager.upload(str(obj.path), self.bucket, obj.key, extra_args=extra))
            self._futures.update(futures)
        try:
            first_error: BaseException | None = None
            for obj, future in zip(objects, futures):
                try:
                    future.result()
                except CancelledError:
                    first_error = first_error or UploadCancelled(obj.key)
                except ClientError as exc:
                    if _error_code(exc) != "PreconditionFailed":
                        first_error = first_error or exc
                    else:
                        # The key appeared meanwhile (perhaps our own earlier, retried request): check it.
                        log.warning("%s already exists; checking it", obj.key)
                        obj.preexisting = True
                except Exception as exc:  # noqa: BLE001 - collected, re-raised below after all futures ended
                    first_error = first_error or exc
            if first_error is not None:
                raise first_error
        finally:
            with self._future_lock:
                self._futures.difference_update(futures)
            for obj in objects:
                self._part_sums.pop(obj.key, None)
        for obj in objects:
            confirmed = self.head(obj.key)
            if confirmed is None:
                raise RuntimeError(f"{obj.key}: upload reported success but HEAD finds no object")
            self._check_existing(confirmed, obj, strict=not obj.preexisting)
            if obj.preexisting:
                out.skipped.append(obj.key)
            else:
                out.uploaded.append(obj.key)
                out.bytes_sent += obj.digest.size

    def _check_existing(self, head: dict[str, Any], obj: _Object, strict: bool) -> None:
        """Raise UploadConflict unless the object is the file we hold.

        ``strict`` (right after our own upload) also compares the server's
        SHA-256; an object from an earlier run may have been cut into parts of
        another size, so there matching metadata and size suffice.
        """
        digest, key = obj.digest, obj.key
        meta_sha = (head.get("Metadata") or {}).get("sha256")
        if meta_sha != digest.sha256_hex or int(head.get("ContentLength", -1)) != digest.size:
            raise UploadConflict(
                f"s3://{self.bucket}/{key} exists with sha256={meta_sha or 'unknown'} "
                f"size={head.get('ContentLength')}, "
                f"local file has sha256={digest.sha256_hex} size={digest.size}; refusing to overwrite")
        server = head.get("ChecksumSHA256")
        if server is None or not strict:
            return  # (server does not report checksums) metadata and size matched
        want = digest.composite_b64() if self._is_multipart(digest.size) else digest.sha256_b64
        if server.split("-")[0] != want:
            raise UploadConflict(f"s3://{self.bucket}/{key}: server SHA-256 {server} does not match local {want}")

    # ------------------------------------------------------------------ journal
    @property
    def journal_dir(self) -> Path:
        return self.state_dir / JOURNAL_DIR

    def _journal_path(self, clip_id: str) -> Path:
        return self.journal_dir / f"{clip_id}.json"

    def _read_journal(self, clip_id: str) -> dict[str, Any] | None:
        if clip_id in self._mem_journals:
            return json.loads(json.dumps(self._mem_journals[clip_id]))
        try:
            data = json.loads(self._journal_path(clip_id).read_bytes())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("unreadable upload journal of %s; treating it as an interrupted upload", clip_id)
            return {}

    def _journals(self) -> list[tuple[str, dict[str, Any]]]:
        try:
            stems = {path.stem for path in self.journal_dir.glob("*.json")}
        except OSError:
            stems = set()
        out = []
        for clip_id in sorted(stems | set(self._mem_journals)):
            journal = self._read_journal(clip_id)
            if journal is not None:
                out.append((clip_id, journal))
        return out

    def _write_journal(self, clip_id: str, data: dict[str, Any]) -> None:
        """Journal atomically; on a full disk keep it in memory instead (logged once per outage),
        so uploads, which free the spool, go on rather than wait for space."""
        try:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._journal_path(clip_id), json.dumps(data).encode())
        except OSError as exc:
            if not self._journal_degraded:
                log.warning("cannot write the upload journal (%s); keeping it in memory until the disk "
                            "has room (after a crash, the start-up sweep aborts unfinished uploads)", exc)
                self._journal_degraded = True
            self._mem_journals[clip_id] = json.loads(json.dumps(data))
            return
        self._mem_journals.pop(clip_id, None)
        if self._journal_degraded:
            log.info("upload journal written to disk again")
            self._journal_degraded = False

    def _clear_journal(self, clip_id: str) -> None:
        self._mem_journals.pop(clip_id, None)
        try:
            self._journal_path(clip_id).unlink()
        except FileNotFoundError:
            pass


def _lean_session(cache_dir: Path | None = None) -> "boto3.session.Session":
    """A boto3 session whose endpoint table lists S3 only (see cloud_agent/endpoints.py)."""
    from cloud_agent import endpoints

    session = boto3.session.Session()
    try:
        core = session._session
        loader = core.get_component("data_loader")
        if not _builtin_endpoints(loader):
            # the operator supplied their own endpoints.json: use it as botocore would, pruned
            endpoints.prune(loader.load_data("endpoints"))
            return session
        from botocore.regions import EndpointResolver

        core._register_internal_component(
            "endpoint_resolver", EndpointResolver(endpoints.s3_endpoints(cache_dir, loader), uses_builtin_data=True))
    except Exception:  # an unexpected botocore layout costs memory, never correctness
        log.debug("could not prune the endpoint table", exc_info=True)
    return session


def _builtin_endpoints(loader: Any) -> bool:
    """Whether the endpoints.json botocore would load is its bundled one."""
    for base in loader.search_paths:
        for name in ("endpoints.json", "endpoints.json.gz"):
            if (Path(base) / name).is_file():
                return bool(loader.is_builtin_path(str(Path(base) / "endpoints")))
    return False


def _if_none_match(params: dict[str, Any], **_kwargs: Any) -> None:
    params.setdefault("IfNoneMatch", "*")
