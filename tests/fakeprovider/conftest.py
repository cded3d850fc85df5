from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxilion.fakeprovider.testing import running_fake_provider


@pytest.fixture(scope="session")
def fake_url() -> Iterator[str]:
    """A fake provider started the way operators start it, shared by the SDK tests."""
    with running_fake_provider(chunk_delay=0.005) as url:
        yield url
