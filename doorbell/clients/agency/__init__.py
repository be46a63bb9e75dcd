"""The agency client: requests, status and verified downloads over HTTP (``doorbell agency``)."""
