"""Revisions of the dead-letter store's tables (:data:`connector.state.migrations.DEAD_LETTERS`)."""
