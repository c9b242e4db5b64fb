"""Alembic environment: migrations run against the engine the coordinator built."""

from __future__ import annotations

from alembic import context

from gpudepin.coordinator.db import metadata

engine = context.config.attributes["connection_engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
