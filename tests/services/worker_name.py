"""`[core] hostname_callable` for the services tests: both Celery workers run on one machine, so each
reports its own name (SERVICES_WORKER_NAME) as the task instances' hostname."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("SERVICES_WORKER_NAME") or socket.getfqdn()
