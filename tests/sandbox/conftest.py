"""Fixtures for the harness's own tests."""
from __future__ import annotations

import pytest

from doorbell.sandbox.embedded import TlsFiles
from tests.support.tls_certs import self_signed as _self_signed


@pytest.fixture
def tls_files(tmp_path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    cert, key = _self_signed(tmp_path)
    return TlsFiles(cafile=cert, certfile=cert, keyfile=key)
