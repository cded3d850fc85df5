"""`proxilion scan`: findings and the policy decision for a body or text on stdin, as JSON.

For policy authors and CI: `--jsonl` checks a data set of prompts (one JSON
string, or object with a "text" field, per line) in one process.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from proxilion.inspect.findings import Verdict
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import PROVIDERS, PolicyError, load_policy


EPILOG = """\
output: one JSON object (with --jsonl, one per input line): decision, rule,
message, findings (type, location and span, never the value) and, when the
decision is redact, "redacted": the body as the provider would receive it.

exit status:
  0  allowed (or only logged)
  1  a finding led to alert, redact or block
  2  the policy is invalid (its errors on stderr, one per line) or an input
     line is not a JSON string / object with a "text" string (--jsonl)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--policy", metavar="FILE", default=None,
                        help="policy file (default: the shipped policy)")
    parser.add_argument("--provider", choices=PROVIDERS, default="unknown",
                        help="provider the body is for (default: unknown)")
    parser.add_argument("--path", default="/", help="upstream path, for rules matching on paths")
    parser.add_argument("--identity", default=None, help="identity, for rules matching on identities")
    parser.add_argument("--response", action="store_true", help="judge as an answer (response rules)")
    parser.add_argument("--jsonl", action="store_true",
                        help="one JSON string or object with a 'text' field per line; one result per line")


def _result(verdict: Verdict) -> dict[str, Any]:
    result = {
        "decision": verdict.action,
        "rule": verdict.rule,
        "message": verdict.message,
        "error": verdict.error,
        "findings": [
            {"type": f.type, "category": f.category, "severity": f.severity, "location": f.location,
             "start": f.start, "end": f.end, "action": f.action, "rule": f.rule}
            for f in verdict.findings
        ],
    }
    if verdict.action == "redact":
        result["redacted"] = verdict.body.decode("utf-8", "surrogateescape")
    return result


def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """The exit status of L{EPILOG}."""
    try:
        inspector = Inspector(load_policy(args.policy))
    except PolicyError as exc:
        stderr.writelines(f"proxilion scan: {line}\n" for line in exc.lines())
        return 2
    judge = inspector.inspect_response if args.response else inspector.inspect_request
    flagged = False
    if not args.jsonl:
        verdict = judge(args.provider, args.path, stdin.read().encode("utf-8", "surrogateescape"),
                        args.identity)
        stdout.write(json.dumps(_result(verdict), indent=2) + "\n")
        return 1 if verdict.action in ("alert", "redact", "block") else 0
    status = 0
    for number, line in enumerate(stdin, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        text = item if isinstance(item, str) else item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, str):
            stdout.write(json.dumps({"line": number, "error": "expected a JSON string or an object with a 'text' string"}) + "\n")
            status = 2
            continue
        verdict = judge(args.provider, args.path, text.encode("utf-8", "surrogateescape"), args.identity)
        result = _result(verdict)
        result["line"] = number
        if isinstance(item, dict) and "id" in item:
            result["id"] = item["id"]
        stdout.write(json.dumps(result) + "\n")
        flagged = flagged or verdict.action in ("alert", "redact", "block")
    return status or (1 if flagged else 0)
