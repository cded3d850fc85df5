"""The one error shape of the admin port, used by the site and by the analytics and rate limit APIs:
C{{"error": {"code": "<snake_case>", "message": "<a sentence, never a secret>", "status": <HTTP status>}}}."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["admin_error", "admin_error_bytes"]


def admin_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def admin_error_bytes(status: int, code: str, message: str) -> bytes:
    return json.dumps(admin_error(status, code, message), separators=(",", ":")).encode("utf-8")
