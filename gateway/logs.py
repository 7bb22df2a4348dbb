"""The gateway's access line (the log line schema itself is `contract.logs`)."""

from __future__ import annotations

import sys
from typing import TextIO

from contract.logs import access_line


class AccessLog:
    """One access line per request (`gateway.access`), written straight to a stream.

    Besides the schema's access fields it names the user, the replica the request
    went to (`upstream`) and the client's address, each when known.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled

    def write(
        self,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        **fields: object,
    ) -> None:
        """Write one access line; None values are left out."""
        if self.enabled:
            self.stream.write(
                access_line(
                    "gateway.access", method, path, status, duration_ms, **fields
                )
            )
