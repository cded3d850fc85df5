"""Scanner throughput on prompt-like text, and CPU added by inspect_request to a 4 KB chat request.

    .venv/bin/python bench/scan_throughput.py [--mb 8] [--requests 2000] [--rounds 9]

Prompt-like text: English prose with numbers, dates, prices, code, JSON and
markdown in realistic proportions (seeded). CPU time is process time, one
core; each figure is the median of --rounds timed rounds, so other work on
the machine moves it less. With inspection off the proxy does not parse the
body at all, so inspect_request's whole cost is what inspection adds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the working tree, not an installed copy

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.inspect.scanner import Scanner

SENTENCES = [
    "Can you summarize the following meeting notes for the team?",
    "The quarterly revenue grew by 12% compared to last year, reaching $4.2 million.",
    "Please rewrite this paragraph in a more formal tone and fix any grammar mistakes.",
    "We deployed version 2.14.3 to the staging cluster on 2024-03-18 at 14:30 UTC.",
    "Explain the difference between a process and a thread in simple terms.",
    "The customer reported that the checkout page times out after 30 seconds.",
    "Translate the product description below into French and German.",
    "Our EKS nodes pull images from ECR and write logs to an S3 bucket.",
    "List three risks of migrating the billing service to the new database.",
    "In 1969, Apollo 11 landed on the Moon; the mission lasted 8 days.",
    "Write unit tests for the function that parses ISO 8601 durations.",
    "The invoice total is 1,250.00 EUR, due within 30 days of receipt.",
    "Why does my React component re-render twice in development mode?",
    "Draft a polite reply declining the meeting invitation for Thursday.",
    "Our p99 latency went from 120 ms to 340 ms after the 3.2 release.",
    "Compare PostgreSQL and MySQL for a read-heavy analytics workload.",
]
CODE = [
    "```python\ndef total(items):\n    return sum(i.price * i.qty for i in items)\n```",
    "```js\nconst res = await fetch(`/api/orders/${id}`);\nif (!res.ok) throw new Error(res.statusText);\n```",
    '```json\n{"name": "widget", "count": 3, "tags": ["a", "b"], "enabled": true}\n```',
    "```sql\nSELECT user_id, COUNT(*) FROM events WHERE ts > now() - interval '7 days' GROUP BY 1;\n```",
    "```bash\nkubectl -n prod rollout restart deployment/api && kubectl get pods -w\n```",
]


def prompt_text(rng: random.Random, size: int) -> str:
    parts, total = [], 0
    while total < size:
        r = rng.random()
        if r < 0.12:
            piece = rng.choice(CODE)
        elif r < 0.18:
            piece = f"- item {rng.randint(1, 50)}: {rng.choice(SENTENCES).lower()}"
        elif r < 0.22:
            piece = f"Ticket #{rng.randint(1000, 99999)} was opened on {rng.randint(1, 12)}/{rng.randint(1, 28)}/2024."
        else:
            piece = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 4)))
        parts.append(piece)
        total += len(piece) + 2
    return "\n\n".join(parts)[:size]


def chat_request(rng: random.Random, size: int = 4096) -> bytes:
    messages = [{"role": "system", "content": "You are a helpful assistant for ACME Corp employees."}]
    while True:
        role = "user" if len(messages) % 2 else "assistant"
        messages.append({"role": role, "content": prompt_text(rng, rng.randint(300, 700))})
        candidate = json.dumps({"model": "gpt-4o", "temperature": 0.3, "messages": messages}).encode()
        if len(candidate) > size:
            extra = len(candidate) - size
            messages[-1]["content"] = messages[-1]["content"][:-extra]
            return json.dumps({"model": "gpt-4o", "temperature": 0.3, "messages": messages}).encode()


def _median_round(fn, rounds: int, calls: int) -> float:
    """Median over `rounds` of the CPU seconds per call of `calls` calls."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - started) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    rng = random.Random(42)

    text = prompt_text(rng, int(args.mb * 1_000_000))
    scanner = Scanner()
    findings = len(scanner.scan(text))
    seconds = _median_round(lambda: scanner.scan(text), args.rounds, 1)
    print(f"scanner throughput: {len(text) / seconds / 1e6:.1f} MB/s per core "
          f"({len(text) / 1e6:.1f} MB in {seconds * 1e3:.0f} ms CPU, median of {args.rounds}; {findings} findings)")

    body = chat_request(rng)
    inspector = Inspector(load_policy(None))
    for label, fn in (("no-op baseline", lambda: None), ("json.loads only", lambda: json.loads(body)),
                      ("inspect_request", lambda: inspector.inspect_request("openai", "/v1/chat/completions", body))):
        for _ in range(200):
            fn()
        per = _median_round(fn, args.rounds, args.requests) * 1e6
        print(f"{label:16s}: {per:7.1f} µs CPU per {len(body)}-byte chat request (median of {args.rounds})")
    verdict = inspector.inspect_request("openai", "/v1/chat/completions", body)
    print(f"verdict on the benchmark request: {verdict.action} ({verdict.message})")


if __name__ == "__main__":
    main()
