"""``python -m connector`` is the ``severa-connector`` command."""

from connector.cli import main

main()
