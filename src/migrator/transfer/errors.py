"""The data path's error: one class, told apart by what the caller should do next.

``retryable``: sending the bytes again may succeed (a dropped connection, a 5xx, a checksum
that came out wrong on the wire). Not retryable: the answer will not change by itself (the
image is gone, access is refused, the target image is not in a state that takes data).

``target_status`` is the target image's status when the transfer gave up (``queued``: a retry
can upload into the same image; ``active``/``killed``/``saving``: the step must delete it and
create a new one first, see ``needs_new_image``).
"""

from __future__ import annotations

from migrator.errors import MigratorError


class TransferError(MigratorError):
    """Moving an image's bytes failed; the message names the image, the cloud and the values."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        target_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.final = not retryable
        self.status_code = status_code
        self.target_status = target_status

    @property
    def needs_new_image(self) -> bool:
        """The target image cannot take another upload (anything but ``queued``)."""
        return self.target_status is not None and self.target_status != "queued"


class TransferInterrupted(TransferError):
    """The caller's stop event was set: the transfer was abandoned on purpose."""

    def __init__(self, message: str, *, target_status: str | None = None) -> None:
        super().__init__(message, retryable=True, target_status=target_status)
