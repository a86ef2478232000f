import os
import sys

from django.core.wsgi import get_wsgi_application

from hosting.config import ConfigError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hosting.settings")
try:
    application = get_wsgi_application()
except ConfigError as exc:
    sys.stderr.write(f"configuration error: {exc}\n")
    sys.exit(2)

# Build the URL resolver (it imports every view module) and load the task modules now, while
# the worker starts, rather than inside its first requests: measured on the provisioning API,
# a fresh worker's first create call took seconds and made the p99 many times the median.
from django.urls import get_resolver

get_resolver().reverse_dict  # noqa: B018
import provisioning.tasks  # noqa: E402, F401
