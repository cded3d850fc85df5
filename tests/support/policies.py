"""Policies the suites share: the shipped one with one rule added, and one with request rules only."""

from __future__ import annotations

from importlib import resources

# The default policy inspects streamed answers, holding back a word or value still being written at the
# end of each event; tests that need a stream's exact upstream timing use this policy of request rules only.
CREDENTIALS_BLOCKED_IN_PROMPTS = """\
version: 1
rules:
  - id: block-credentials
    direction: request
    match:
      categories: [credential]
    action: block
"""

# An answer rule the shipped policy lacks: an SSN in an answer blocks it.
BLOCK_SSN_IN_ANSWERS = """
  - id: block-ssn-in-answers
    direction: response
    priority: 200
    match: {types: [ssn]}
    action: block
"""


def shipped_policy_with(rules: str) -> str:
    """The shipped policy's text with C{rules} (YAML list items) appended to its rules."""
    return resources.files("proxilion.inspect").joinpath("default_policy.yaml").read_text("utf-8") + rules
