"""The pytest plugin (entry point C{pytest11}: C{proxilion}): an in-memory Proxilion per test.

Fixtures:

- C{proxilion}: a started L{proxilion.testing.InMemoryProxilion}, stopped after the test;
  options from the C{proxilion} marker, e.g.
  C{@pytest.mark.proxilion(policy="policy.yaml", rate_limit_per_minute=2)};
- C{fake_provider}: the in-process L{proxilion.fakeprovider.FakeProvider} behind it
  (a conftest fixture of the same name takes precedence, as pytest always does).

Nothing of Proxilion is imported until a test asks for a fixture, so having
the plugin installed costs other suites' collection nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from proxilion.fakeprovider import FakeProvider
    from proxilion.testing import InMemoryProxilion

__all__ = ["proxilion", "fake_provider"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "proxilion(**options): options of the in-memory Proxilion (see proxilion.testing.InMemoryProxilion)",
    )


@pytest.fixture
def proxilion(request: pytest.FixtureRequest) -> Iterator[InMemoryProxilion]:
    """A started in-memory Proxilion whose providers are the in-process fake provider."""
    from proxilion.testing import InMemoryProxilion

    marker = request.node.get_closest_marker("proxilion")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    harness = InMemoryProxilion(**options)
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def fake_provider(proxilion: InMemoryProxilion) -> FakeProvider:
    """The fake provider the C{proxilion} fixture forwards to: what it received, its stats."""
    return proxilion.fake_provider
