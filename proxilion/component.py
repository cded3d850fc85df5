"""What a service reports to C{/status} and to C{proxilion_health_check_status}."""

from __future__ import annotations

from typing import Any, Literal, Protocol

__all__ = ["Component", "Health"]

# A shared service's trouble (Redis down, the database unreachable) degrades a component, never the process.
Health = Literal["ok", "degraded", "spooling"]


class Component(Protocol):
    """A service with a state of health and a status section; the policy, the rate limiter and the analytics writer."""

    def health(self) -> Health: ...

    def status(self) -> dict[str, Any]: ...
