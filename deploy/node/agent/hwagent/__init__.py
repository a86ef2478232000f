"""The Hostwright node agent: typed, idempotent node actions behind the panel's forced-command keys.

Each module holds one kind of resource and registers its actions with ``registry.action``.
The agent uses the standard library only (and packages from Debian), so a node needs nothing
from PyPI.
"""
