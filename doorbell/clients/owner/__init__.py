"""The owner's app: consent decisions, grants, audit verification (``doorbell owner``)."""
