"""Alembic migrations, shipped as package data so an installed service can upgrade its schema."""
