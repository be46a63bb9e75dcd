"""Test helpers, importable as ``tests.support.*`` from every test area (one place, one naming style)."""
