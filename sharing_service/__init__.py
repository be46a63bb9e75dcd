"""Sharing service: owner-controlled police access, grants, audit, transparency."""
