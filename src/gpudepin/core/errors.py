"""One exception tree for gpudepin; the API maps each class to a status and a code.

GpudepinError                      500 internal
├── InvalidInput                   400 invalid_input      (bad field, bad file, bad range)
│   └── PayloadTooLarge            413 payload_too_large
├── Unauthorized                   401 unauthorized       (no/expired session, bad signature)
├── Forbidden                      403 forbidden          (someone else's job, task or funds)
│   └── RaceLost                   403 race_lost          (a speculative copy's result won)
├── NotFound                       404 not_found
├── Conflict                       409 conflict           (illegal state transition, double award)
│   └── InsufficientFunds          409 insufficient_funds
├── NoMatch                        409 no_match           (market cannot clear; carries reasons)
└── Unavailable                    503 unavailable        (a dependency such as the chain is down)

The SDK turns a JSON error back into the same class by its ``code``.
"""

from __future__ import annotations

from typing import ClassVar


class GpudepinError(Exception):
    """Root of every error gpudepin raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, hint: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details = details

    def to_dict(self) -> dict[str, object]:
        """The JSON body the API returns for this error."""
        body: dict[str, object] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(GpudepinError):
    status = 400
    code = "invalid_input"
    default_hint = "Check the value against `gpudepin --help` for this command."


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "payload_too_large"
    default_hint = "Upload a smaller file or raise the coordinator's --max-upload-mb."


class Unauthorized(GpudepinError):
    status = 401
    code = "unauthorized"
    default_hint = "Log in again: the CLI does it for you with your key in the home folder."


class Forbidden(GpudepinError):
    status = 403
    code = "forbidden"
    default_hint = "Only the owner of this object may do that."


class RaceLost(Forbidden):
    """The provider's attempt ended because another copy of the task delivered first: not
    a fault of its own (agents log it and move on; benchmarks count it apart)."""

    code = "race_lost"
    default_hint = "Move on to other work: this attempt will not be accepted."


class NotFound(GpudepinError):
    status = 404
    code = "not_found"
    default_hint = "List what exists with `gpudepin jobs list`."


class Conflict(GpudepinError):
    status = 409
    code = "conflict"
    default_hint = "Reload the object's state and try again."


class InsufficientFunds(Conflict):
    code = "insufficient_funds"
    default_hint = "Deposit more with `gpudepin wallet deposit AMOUNT`."


class NoMatch(GpudepinError):
    status = 409
    code = "no_match"
    default_hint = "Raise the maximum price or widen the requirements; `gpudepin quote` explains."


class Unavailable(GpudepinError):
    status = 503
    code = "unavailable"
    default_hint = "Try again in a moment."


ERRORS_BY_CODE: dict[str, type[GpudepinError]] = {
    cls.code: cls
    for cls in (
        GpudepinError,
        InvalidInput,
        PayloadTooLarge,
        Unauthorized,
        Forbidden,
        RaceLost,
        NotFound,
        Conflict,
        InsufficientFunds,
        NoMatch,
        Unavailable,
    )
}
