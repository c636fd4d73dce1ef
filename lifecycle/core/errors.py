"""What the lifecycle service refuses, as errors the UI shows and the API maps to HTTP answers.

``str()`` of each is a sentence a user can act on; ``error`` is a short code for scripts.
"""

from __future__ import annotations

from typing import ClassVar


class LifecycleError(Exception):
    status_code: ClassVar[int] = 400
    error: ClassVar[str] = "lifecycle_error"


class UnknownModel(LifecycleError):
    status_code = 404
    error = "unknown_model"

    def __init__(self, model_id: str, known: list[str]) -> None:
        self.model_id = model_id
        listed = ", ".join(known) if known else "none: the catalog is empty"
        super().__init__(f"there is no model {model_id!r} in the catalog (models: {listed})")


class CannotLoad(LifecycleError):
    status_code = 409
    error = "cannot_load"


class NotEnoughMemory(CannotLoad):
    """The model's memory_gb does not fit the budget beside what is loaded."""

    error = "not_enough_memory"


class InvalidRequest(LifecycleError):
    status_code = 422
    error = "invalid_request"


class StoreUnwritable(LifecycleError):
    """The event store refused a write (disk full, read-only file, I/O error): nothing that
    happens now can be recorded, so nothing is acknowledged either."""

    status_code = 503
    error = "store_unwritable"

    def __init__(self, where: str, cause: str) -> None:
        self.where = where
        self.cause = cause
        super().__init__(
            f"the event store can't be written: {cause} at {where}. Free space or fix the file's "
            "permissions; the app records what happened meanwhile once it can write again"
        )
