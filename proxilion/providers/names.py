"""The providers Proxilion knows and the hosts each answers on: the one home of both.

Settings, policy matches, audit rows, metrics labels and routing all derive from these.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["PROVIDER_HOSTS", "PROVIDER_LABELS", "PROVIDER_NAMES", "Provider", "UNKNOWN"]

Provider = Literal["openai", "anthropic", "gemini", "cohere", "azure", "bedrock"]
PROVIDER_NAMES: tuple[Provider, ...] = get_args(Provider)
# The provider of a request that named none it could be told from (refused before routing, say).
UNKNOWN = "unknown"
# What audit rows, metrics labels and policy matches may name.
PROVIDER_LABELS: tuple[str, ...] = (*PROVIDER_NAMES, UNKNOWN)

# Hosts each provider answers on; the first is the default upstream. Azure has only
# per-resource hosts, matched by pattern in proxy/routing.py.
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "gemini": ("generativelanguage.googleapis.com",),
    "cohere": ("api.cohere.com", "api.cohere.ai"),
    "azure": (),
    "bedrock": ("bedrock-runtime.us-east-1.amazonaws.com",),
}
