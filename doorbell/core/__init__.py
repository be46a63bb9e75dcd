"""The core contracts: imported by every part, importing nothing above them.

One module per contract: ``config``, ``protocol`` (topics and schemas),
``spool``, ``bucket`` (key layout), ``signing``, ``auditchain``,
``broker_acl``, ``mqtt`` (the one client factory), ``errors``, ``fileio``,
``sdnotify``.
"""
__version__ = "0.1.0"
