"""The owner's app holds one connection per login (the broker binds client ids to
logins): when a second app logs in as the same owner, the first one says it lost
its connection instead of silently waiting, and does not fight back."""
from __future__ import annotations

import pytest

from doorbell.clients.owner.app import OwnerApp, OwnerError
from doorbell.core.config import parse_config
from tests.support.polling import wait_for


def test_a_second_app_as_the_same_owner_ends_the_first_clearly(broker, tmp_path) -> None:
    cfg = parse_config({"owner": {"owner_id": "owner-b", "key_file": str(tmp_path / "k.pem")},
                        "mqtt": {"host": broker.host, "port": broker.port, "username": "owner-b",
                                 "password": broker.users["owner-b"]}}, source="<owner test>", env={})
    offset = broker.log_path.stat().st_size
    with OwnerApp(cfg) as first:
        with OwnerApp(cfg) as second:
            wait_for(lambda: not first._client.is_connected(), what="the first app to lose its session")
            # and its network loop has ended: it will not reconnect and evict the second app
            wait_for(lambda: first._client._thread is None, what="the first app's paho loop to end")
            with pytest.raises(OwnerError, match="lost the connection to the broker"):
                first.next_message(0.2)
            second.subscribe("doorbell/v1/owners/owner-b/#")  # the second app works
    log = broker.log_path.read_bytes()[offset:].decode(errors="replace")
    assert log.count("Client owner-b already connected, closing old connection") == 1
