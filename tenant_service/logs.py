"""The backend's access line (the log line schema itself is `contract.logs`)."""

from __future__ import annotations

import logging
import sys
from typing import Final

from contract.logs import access_line

ACCESS_LOGGER: Final = logging.getLogger("tenant_service.access")


def write_access(
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    tenant: str | None = None,
) -> None:
    """One access line (`tenant_service.access`) to stdout, if that logger is on.

    `tenant`: the request's (a pool's is not in the context by then); None: the
    context's.
    """
    if ACCESS_LOGGER.isEnabledFor(logging.INFO):
        sys.stdout.write(
            access_line(
                ACCESS_LOGGER.name, method, path, status, duration_ms, tenant=tenant
            )
        )
