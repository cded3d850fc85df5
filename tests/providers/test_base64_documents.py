"""Text documents sent as base64 are read and redacted like any other text; images and PDFs are skipped."""

from __future__ import annotations

import base64
import json

import pytest

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.providers.fields import decoded_text

DEFAULT = Inspector(load_policy(None))
CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.org"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _anthropic_document(data: str, media_type: str = "text/plain") -> bytes:
    return json.dumps({"model": "claude-3-5-sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}},
        {"type": "text", "text": "summarise"}]}]}).encode()


@pytest.mark.parametrize("text", [f"card {CARD}", "Customer notes.\n" * 400 + f"card {CARD}\n"])
def test_a_base64_text_document_is_read_short_or_long(text):
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(_b64(text.encode())))
    assert verdict.action == "block"
    assert [(f.type, f.location) for f in verdict.findings] == [("credit_card", "messages[0].content[0].source.data<base64>")]


def test_a_data_url_text_file_is_redacted_and_stays_a_data_url():
    data_url = "data:text/plain;base64," + _b64(f"Contact {EMAIL} for access.".encode())
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "notes.txt", "file_data": data_url}},
        {"type": "text", "text": "summarise"}]}]}).encode()
    verdict = DEFAULT.inspect_request("openai", "/v1/chat/completions", body)
    assert verdict.action == "redact"
    sent = json.loads(verdict.body)
    file_data = sent["messages"][0]["content"][0]["file"]["file_data"]
    assert file_data.startswith("data:text/plain;base64,")
    assert base64.b64decode(file_data.split(",", 1)[1]).decode() == "Contact [REDACTED:EMAIL] for access."
    assert sent["messages"][0]["content"][1] == {"type": "text", "text": "summarise"}


@pytest.mark.parametrize("blob", [_b64(PNG), "data:image/png;base64," + _b64(PNG), _b64(b"%PDF-1.7\n\xe2\xe3\xcf\xd3" + bytes(300))])
def test_images_and_pdfs_are_not_decoded(blob):
    assert decoded_text(blob) is None
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(blob, "image/png"))
    assert verdict.action == "allow" and verdict.findings == ()


def test_a_data_field_that_is_not_base64_is_scanned_as_it_is():
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(f"plain card {CARD}"))
    assert verdict.action == "block"
    assert verdict.findings[0].location == "messages[0].content[0].source.data"
