"""``severa-connector console``: the dead-letter console, a web page over the dead-letter store.

It reads the central store the pods fill and drives replay and edit through the very operations
the ``dlq`` commands call (:mod:`connector.dlq.operations`) -- no second implementation of any of
them. :mod:`~connector.console.auth` decides who may use it, :mod:`~connector.console.views`
renders the pages (everything escaped; no JavaScript), :mod:`~connector.console.app` wires the
routes, and :func:`~connector.console.server.serve` runs it. Guide: ``docs/console.md``.
"""
