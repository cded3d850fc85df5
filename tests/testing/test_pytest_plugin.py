"""The pytest plugin, used as another project would: the `proxilion` and `fake_provider` fixtures."""

from __future__ import annotations

import pytest

from proxilion.fakeprovider import FakeProvider
from proxilion.testing import InMemoryProxilion

CARD = "4111 1111 1111 1111"


def test_a_card_number_is_blocked_and_never_reaches_the_provider(proxilion: InMemoryProxilion, fake_provider: FakeProvider) -> None:
    answer = proxilion.chat(f"charge card {CARD} please")

    assert answer.status == 403
    assert "credit_card" in answer.json()["error"]["message"]
    assert fake_provider.requests == []
    (row,) = proxilion.audit()
    assert (row.status, row.decision, dict(row.findings)) == (403, "block", {"credit_card": 1})


def test_an_email_is_redacted_on_its_way_upstream(proxilion: InMemoryProxilion, fake_provider: FakeProvider) -> None:
    answer = proxilion.chat("write to jane.doe@example.com")

    assert answer.status == 200
    (sent,) = fake_provider.requests
    assert "jane.doe@example.com" not in sent["body"] and "[REDACTED:EMAIL]" in sent["body"]
    (row,) = proxilion.audit()
    assert (row.decision, dict(row.findings)) == ("redact", {"email": 1})


@pytest.mark.proxilion(rate_limit_per_minute=2, rate_limit_burst=2)
def test_past_the_limit_the_answer_is_429(proxilion: InMemoryProxilion) -> None:
    statuses = [proxilion.chat("hello").status for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert [row.decision for row in proxilion.audit()][-1] == "ratelimited"
