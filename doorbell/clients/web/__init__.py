"""The owner's app for the browser: JavaScript sources (``src/``), built into ``dist/``.

``npm ci && npm run build`` in this directory writes ``dist/``, which ships as
package data, so a Python install serves it without Node.js:
``doorbell owner web`` (doorbell.clients.owner.web) on the owner's machine and
the sharing service at ``/app/`` (sharing_service.api). See docs/owner-app.md.
"""
