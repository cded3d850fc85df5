"""The trial mixin, used as another project would; run by trial (tests/testing/test_trial_mixin.py runs it)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from proxilion.testing import ProxilionTestMixin

CARD = "4111 1111 1111 1111"


class BlockAndRedact(ProxilionTestMixin, TestCase):
    def setUp(self) -> None:
        self.start_proxilion()

    async def test_a_card_number_is_blocked(self) -> None:
        answer = await self.proxilion_chat(f"charge card {CARD} please")

        self.assertEqual(answer.status, 403)
        self.assertEqual(self.proxilion.upstream_requests(), [])
        (row,) = await self.proxilion_audit()
        self.assertEqual((row.decision, dict(row.findings)), ("block", {"credit_card": 1}))

    async def test_an_email_is_redacted(self) -> None:
        answer = await self.proxilion_chat("write to jane.doe@example.com")

        self.assertEqual(answer.status, 200)
        (sent,) = self.proxilion.upstream_requests()
        self.assertIn("[REDACTED:EMAIL]", sent["body"])
        self.assertNotIn("jane.doe@example.com", sent["body"])
        (row,) = await self.proxilion_audit()
        self.assertEqual(row.decision, "redact")


class RateLimit(ProxilionTestMixin, TestCase):
    def setUp(self) -> None:
        self.start_proxilion(rate_limit_per_minute=1, rate_limit_burst=1)

    async def test_the_second_request_in_a_minute_is_429(self) -> None:
        first = await self.proxilion_chat("hello")
        second = await self.proxilion_chat("hello")

        self.assertEqual((first.status, second.status), (200, 429))
        self.assertEqual(second.headers["retry-after"], "60")
