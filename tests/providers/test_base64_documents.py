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


def _urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


# ">>>" and "???" put "+" and "/" (or "-" and "_") in the encoding.
NOTES = f"Invoice notes >>> paid with card {CARD} ??? ok\n".encode()
SPELLINGS = {
    "url-safe": _urlsafe(NOTES),
    "url-safe, unpadded": _urlsafe(NOTES).rstrip("="),
    "unpadded": _b64(NOTES).rstrip("="),
    "wrapped": "\n".join(_b64(NOTES * 8)[i:i + 76] for i in range(0, len(_b64(NOTES * 8)), 76)) + "\n",
    "wrapped, CRLF": "\r\n".join(_b64(NOTES * 8)[i:i + 64] for i in range(0, len(_b64(NOTES * 8)), 64)),
    "wrapped, no final newline": "\n".join(_b64(NOTES * 8)[i:i + 76] for i in range(0, len(_b64(NOTES * 8)), 76)),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_base64_spelling_is_read(spelling):
    data = SPELLINGS[spelling]
    assert decoded_text(data) is not None and CARD in decoded_text(data)
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(data))
    assert verdict.action == "block", spelling


def test_gemini_inline_data_in_the_url_safe_alphabet_is_read():
    # google-genai's Part.from_bytes sends URL-safe base64.
    body = json.dumps({"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "text/plain", "data": _urlsafe(NOTES)}}, {"text": "summarise"}]}]}).encode()
    verdict = DEFAULT.inspect_request("gemini", "/v1beta/models/gemini-2.0-flash:generateContent", body)
    assert verdict.action == "block"
    assert [f.location for f in verdict.findings] == ["contents[0].parts[0].inlineData.data<base64>"]


def _spell(raw: bytes, spelling: str) -> str:
    data = _urlsafe(raw) if "url-safe" in spelling else _b64(raw)
    if "unpadded" in spelling:
        data = data.rstrip("=")
    if "wrapped" in spelling:
        width, newline = (64, "\r\n") if "CRLF" in spelling else (76, "\n")
        data = newline.join(data[i:i + width] for i in range(0, len(data), width))
        data += "" if "no final newline" in spelling else newline
    return data


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_a_redacted_document_is_encoded_back_in_its_own_spelling(spelling):
    notes = (f"Invoice notes >>> mail {EMAIL} ??? ok\n" * (8 if "wrapped" in spelling else 1)).encode()
    if len(notes) % 3 == 0:
        # Unpadded base64 of a multiple of 3 bytes reads as padded: make the spelling unambiguous.
        notes += b"!"
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(_spell(notes, spelling)))
    assert verdict.action == "redact", spelling
    out = json.loads(verdict.body)["messages"][0]["content"][0]["source"]["data"]
    assert out == _spell(notes.replace(EMAIL.encode(), b"[REDACTED:EMAIL]"), spelling)


def test_a_long_url_safe_token_that_is_not_text_is_still_scanned():
    long_identifier = "session_" + "x" * 300 + "_AKIAZ3MVJQ5T4XW7PLQA_end"
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": long_identifier}]}).encode()
    verdict = DEFAULT.inspect_request("openai", "/v1/chat/completions", body)
    assert verdict.action == "block"


def _chat(content) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).encode()


@pytest.mark.parametrize("content", [
    # Looks like a data: URL but is not base64: read as the text it is.
    f"data:x;base64, card {CARD}, thanks",
    "data:text/plain;base64,not base64 at all " + CARD,
    # Digits or upper-case keys one per line use the base64 alphabet but are no binary data.
    "\n".join(["4111111111111111"] * 16),
    "\n".join(["AKIAZ3MVJQ5T4XW7PLQA"] * 15),
])
def test_text_that_only_looks_like_base64_is_scanned(content):
    verdict = DEFAULT.inspect_request("openai", "/v1/chat/completions", _chat(content))
    assert verdict.action == "block", content[:40]


def test_random_binary_data_without_a_known_signature_is_still_skipped():
    import random
    data = _b64(random.Random(7).randbytes(3000))
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(data, "application/octet-stream"))
    assert verdict.action == "allow" and verdict.findings == ()


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16"])
def test_text_documents_in_other_encodings_are_read_and_redacted_in_their_encoding(encoding):
    text = f"name,mail,card\nJosé García,{EMAIL},ok\n"
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(_b64(text.encode(encoding)), "text/csv"))
    assert verdict.action == "redact"
    data = json.loads(verdict.body)["messages"][0]["content"][0]["source"]["data"]
    assert base64.b64decode(data).decode(encoding) == text.replace(EMAIL, "[REDACTED:EMAIL]")
    carded = f"name,card\nJosé García,{CARD}\n".encode(encoding)
    assert DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(_b64(carded), "text/csv")).action == "block"


def test_a_long_utf8_document_with_a_stray_latin1_byte_is_read_and_written_back_exactly():
    raw = ("Customer notes.\n" * 400).encode() + f"mail {EMAIL} caf".encode() + b"\xe9\n"
    verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(_b64(raw)))
    assert verdict.action == "redact"
    data = json.loads(verdict.body)["messages"][0]["content"][0]["source"]["data"]
    assert base64.b64decode(data) == raw.replace(EMAIL.encode(), b"[REDACTED:EMAIL]")
    carded = ("Customer notes.\n" * 400).encode() + f"card {CARD} caf".encode() + b"\xe9\n"
    assert DEFAULT.inspect_request("anthropic", "/v1/messages", _anthropic_document(_b64(carded))).action == "block"


SMUGGLED = (f"card {CARD} on file. " * 10).encode()


@pytest.mark.parametrize("raw", [
    b"\x89PNG\r\n\x1a\n" + SMUGGLED,  # a file signature before text
    b"\x0c" + SMUGGLED,
    b"\x1b" + SMUGGLED,
    SMUGGLED + b"\x00",
    SMUGGLED.decode().encode("utf-16-le"),  # no byte order mark
    SMUGGLED.decode().encode("utf-16-be"),
])
def test_text_behind_a_signature_a_control_byte_or_in_utf16_without_a_bom_is_read(raw):
    for body in (_chat(_b64(raw)), _anthropic_document(_b64(raw))):
        verdict = DEFAULT.inspect_request("anthropic", "/v1/messages", body)
        assert verdict.action == "block", raw[:12]
