"""The model a request names and the tokens an answer reports, for the audit row."""

from __future__ import annotations

import json

import pytest

from proxilion.providers.usage import model_of, usage_of


@pytest.mark.parametrize(
    "body, path, model",
    [
        (b'{"messages": [], "model": "gpt-4o-mini"}', "/v1/chat/completions", "gpt-4o-mini"),
        # What orjson refuses json still reads: NaN, a lone surrogate, a huge integer.
        (b'{"model": "gpt-4o", "seed": NaN}', "/v1/chat/completions", "gpt-4o"),
        (b'{"model": "claude-3-5-sonnet", "system": "\\ud800"}', "/v1/messages", "claude-3-5-sonnet"),
        (b'{"model": "m", "n": 123456789012345678901234567890}', "/v1/chat/completions", "m"),
        (b'{"model": 7}', "/v1/chat/completions", None),
        (b"not json", "/v1/chat/completions", None),
        (b"", "/v1beta/models/gemini-1.5-pro:generateContent", "gemini-1.5-pro"),
        (b'{"contents": []}', "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", "anthropic.claude-3-haiku-20240307-v1:0"),
    ],
)
def test_model_of(body, path, model):
    assert model_of(body, path) == model


def test_model_names_are_cut_to_128_characters():
    assert model_of(json.dumps({"model": "m" * 500}).encode(), "/v1/chat/completions") == "m" * 128


def test_usage_of_openai_and_anthropic_answers():
    assert usage_of({"usage": {"prompt_tokens": 10, "completion_tokens": 2}}) == (10, 2)
    assert usage_of({"usage": {"input_tokens": 7, "output_tokens": 3}}) == (7, 3)
    assert usage_of({"choices": []}) == (None, None)
