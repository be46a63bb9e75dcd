"""One log format for every process and tool, configured once at the entry point."""
from __future__ import annotations

import logging


def setup_logging(verbose: bool = False, level: str | None = None) -> None:
    """Configure the root logger: DEBUG with ``verbose``, else ``level`` (a config's ``logging.level``) or INFO."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level or "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
