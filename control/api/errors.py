"""Kubernetes `Status` failures, shared by the API server and its clients.

The server raises these and renders `.status` as the response body; the
client turns a failed response back into the same exception, so callers on
both sides test `err.reason` / `err.code` exactly as Kubernetes code does.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API call, carrying the Kubernetes Status object."""

    def __init__(self, status: dict[str, Any]):
        self.status = status
        super().__init__(status.get("message", ""))

    @property
    def code(self) -> int:
        return int(self.status.get("code", 500))

    @property
    def reason(self) -> str:
        return str(self.status.get("reason", ""))


def status_failure(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        status["details"] = details
    return status


def status_success(code: int = 200, details: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    }
    if details is not None:
        status["details"] = details
    return status


def _details(name: str, plural: str, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        status_failure(
            404,
            "NotFound",
            f'{_qualified(plural, group)} "{name}" not found',
            _details(name, plural, group),
        )
    )


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        status_failure(
            409,
            "AlreadyExists",
            f'{_qualified(plural, group)} "{name}" already exists',
            _details(name, plural, group),
        )
    )


def conflict(plural: str, name: str, why: str, group: str = "") -> ApiError:
    return ApiError(
        status_failure(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
            _details(name, plural, group),
        )
    )


def invalid(
    kind: str,
    name: str,
    causes: list[tuple[str, str, str]],
    group: str = "",
) -> ApiError:
    """422 Invalid; causes are (field path, reason, message) triples.

    reason is a Kubernetes CauseType such as FieldValueRequired or
    FieldValueInvalid.
    """
    summary = ", ".join(f"{field}: {message}" for field, _, message in causes)
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": reason, "message": message, "field": field} for field, reason, message in causes],
    }
    if group:
        details["group"] = group
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(status_failure(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details))


def bad_request(message: str) -> ApiError:
    return ApiError(status_failure(400, "BadRequest", message))


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(status_failure(405, "MethodNotAllowed", message))


def gone(message: str) -> ApiError:
    return ApiError(status_failure(410, "Expired", message))


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        status_failure(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}")
    )


def internal_error(message: str) -> ApiError:
    return ApiError(status_failure(500, "InternalError", f"Internal error occurred: {message}"))


def service_unavailable(message: str) -> ApiError:
    return ApiError(status_failure(503, "ServiceUnavailable", message))
