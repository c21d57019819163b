"""Alembic's environment for the state tables: online only, on the connection :func:`migrate` lends.

Run through :func:`connector.state.migrations.migrate`, which opens the transaction, takes the
migration lock and hands the connection, the table prefix and the tree being migrated over in
``config.attributes``.
"""

from __future__ import annotations

from alembic import context

from connector.state.migrations import Tree, version_table

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the state migrations run from code: "
        "call connector.state.migrations.migrate(engine, table_prefix=...)"
    )
table_prefix: str = context.config.attributes["table_prefix"]
tree: Tree = context.config.attributes["tree"]

context.configure(
    connection=connection,
    target_metadata=tree.metadata(table_prefix),
    version_table=version_table(table_prefix, tree),
    # Read by the revisions (op.get_context().opts["table_prefix"]).
    table_prefix=table_prefix,
)
# migrate() already began the transaction: this joins it rather than starting another.
with context.begin_transaction():
    context.run_migrations()
