"""Steps and operation kinds. How to add them: see ``provisioning.steps.base``.

Importing this package registers the built-in kinds (create, suspend, unsuspend, terminate,
change_plan) and the drift repair kind. Modules adding kinds are imported here so every
worker knows them.
"""

from provisioning import drift  # noqa: F401
from provisioning.resources import steps as resource_steps  # noqa: F401  (DNS, mail, databases)
from provisioning.steps import hosting  # noqa: F401
