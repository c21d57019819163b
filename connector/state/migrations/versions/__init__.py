"""Revisions of the state tables, applied in order by :func:`connector.state.migrations.migrate`."""
