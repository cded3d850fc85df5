"""Where a request goes: from its path or Host header to a known provider upstream.

Only AI provider hosts are reachable; everything else is refused, so the proxy
is never an open proxy.
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import urlsplit

import attrs

from proxilion.providers.names import PROVIDER_HOSTS

__all__ = ["Route", "RouteError", "Router", "PROVIDER_HOSTS"]

_HOST_TO_PROVIDER = {host: name for name, hosts in PROVIDER_HOSTS.items() for host in hosts}
_PATTERN_HOSTS = (
    (re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})\.openai\.azure\.com$"), "azure"),
    (re.compile(r"^bedrock-runtime(?:-fips)?\.[a-z]{2}(?:-gov)?-[a-z]+-\d\.amazonaws\.com$"), "bedrock"),
)
_PROXY_PREFIX = b"/proxy/"


class RouteError(Exception):
    """The request names no reachable upstream; C{status} and C{message} say why."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@attrs.frozen
class Route:
    """An upstream target: provider name, base URL (scheme://host[:port][/prefix]) and path+query."""

    provider: str
    base: str
    path: str
    query: str

    @property
    def url(self) -> bytes:
        target = self.base + self.path
        if self.query:
            target += "?" + self.query
        return target.encode("ascii")


def provider_for_host(host: str) -> str | None:
    """The provider a host name belongs to, or None."""
    host = host.lower().rstrip(".")
    provider = _HOST_TO_PROVIDER.get(host)
    if provider is not None:
        return provider
    for pattern, name in _PATTERN_HOSTS:
        if pattern.match(host):
            return name
    return None


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Router:
    """Resolve requests to L{Route}s, honouring configured upstream overrides."""

    def __init__(self, overrides: Mapping[str, str]) -> None:
        self._overrides = dict(overrides)

    def _base(self, provider: str, host: str | None) -> str:
        override = self._overrides.get(provider)
        if override:
            return override
        if host is None:
            hosts = PROVIDER_HOSTS[provider]
            if not hosts:
                raise RouteError(
                    403,
                    f"'{provider}' needs its resource host: use /proxy/<resource>.openai.azure.com/... "
                    f"or configure --upstream {provider}=https://<resource>.openai.azure.com",
                    "upstream_not_configured",
                )
            host = hosts[0]
        return "https://" + host

    def route(self, uri: bytes, host_header: bytes | None) -> Route:
        """Resolve a request line URI plus Host header; raise L{RouteError} if not allowed."""
        try:
            text = uri.decode("ascii")
        except UnicodeDecodeError:
            raise RouteError(400, "The request URI must be ASCII (percent-encode other characters).", "invalid_uri") from None
        if text.startswith(("http://", "https://")):
            # Absolute-form request line (client configured us as a forward proxy).
            parts = urlsplit(text)
            return self._transparent(parts.hostname or "", parts.path or "/", parts.query)
        path, _, query = text.partition("?")
        if uri.startswith(_PROXY_PREFIX):
            target, slash, rest = path[len(_PROXY_PREFIX):].partition("/")
            return self._explicit(target, "/" + rest if slash else "/", query)
        if not path.startswith("/"):
            # Appended to the upstream base, ".evil.com/" or "@evil.com/" would name another host.
            raise RouteError(400, "The request target must be a path starting with '/'.", "invalid_uri")
        host = _strip_port(host_header.decode("latin-1")) if host_header else ""
        return self._transparent(host, path, query)

    def _explicit(self, target: str, path: str, query: str) -> Route:
        target = target.lower().rstrip(".")
        if not target:
            raise RouteError(404, "Use /proxy/<provider>/<path>, e.g. /proxy/openai/v1/chat/completions.", "missing_provider")
        if target in PROVIDER_HOSTS:
            return Route(target, self._base(target, None), path, query)
        provider = provider_for_host(target)
        if provider is None:
            raise RouteError(403, f"'{target}' is not a known AI provider; Proxilion is not an open proxy.", "unknown_upstream")
        return Route(provider, self._base(provider, target), path, query)

    def _transparent(self, host: str, path: str, query: str) -> Route:
        provider = provider_for_host(host) if host else None
        if provider is None:
            shown = host or "(none)"
            raise RouteError(
                403,
                f"Host '{shown}' is not a known AI provider; use /proxy/<provider>/... . Proxilion is not an open proxy.",
                "unknown_upstream",
            )
        return Route(provider, self._base(provider, host.lower().rstrip(".")), path, query)
