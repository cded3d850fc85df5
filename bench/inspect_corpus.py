"""Recall and false-positive rate per detector on the generated corpus and on the external set.

    .venv/bin/python bench/inspect_corpus.py [--set external|generated|both] [--prompts 3000] [--seed 7]

The external set (tests/data/external, see its README) is other projects'
detector tests: recall per expected type, false positives per upstream rule
(the look-alike kind), out-of-scope examples counted apart. The generated
corpus is ours: each prompt is prompt-like text with planted values (label: type and exact
span) and look-alikes (label: must not fire). Recall per type = planted values
found with the right type and span; false-positive rate per detector = share
of look-alike plantings on which that detector fired. Values come from
tests/inspect/valuegen.py, which computes checksums independently.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
from collections import Counter

import attrs

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the working tree, not an installed copy
sys.path.insert(0, str(ROOT / "tests" / "inspect"))
sys.path.insert(0, str(ROOT / "bench"))

import external_set  # noqa: E402
import valuegen as g  # noqa: E402
from scan_throughput import prompt_text  # noqa: E402

from proxilion.inspect.scanner import Scanner  # noqa: E402

PLANTS = {
    "credit_card": (g.card, ["Please charge my card {}.", "card: {}", "Use {} for the renewal"]),
    "ssn": (g.ssn, ["SSN {} on the W-2", "her social security number is {}"]),
    "aba_routing": (g.aba, ["routing number {}", "ABA {} for the wire"]),
    "iban": (g.iban, ["IBAN {}", "pay to {} by Friday"]),
    "npi": (g.npi, ["provider NPI {}", "NPI: {}"]),
    "dea": (g.dea, ["DEA number {}", "prescriber {} signed"]),
    "mbi": (g.mbi, ["Medicare MBI {}", "beneficiary {}"]),
    "email": (g.email, ["email {} about it", "from: {}"]),
    "phone": (g.phone, ["call {} after 5pm", "phone: {}"]),
    "ip_address": (g.public_ip, ["requests from {} were blocked", "server at {}"]),
    "aws_access_key_id": (g.aws_key_id, ["AWS_ACCESS_KEY_ID={}", "key {} leaked"]),
    "github_token": (g.github_token, ["GITHUB_TOKEN {}", "token {} in CI"]),
    "openai_api_key": (g.openai_key, ["client = OpenAI(api_key_value) # {}", "key is {}"]),
    "anthropic_api_key": (g.anthropic_key, ["ANTHROPIC key {}", "use {}"]),
    "slack_token": (g.slack_token, ["slack bot {}", "token {}"]),
    "stripe_key": (g.stripe_key, ["stripe {}", "STRIPE {}"]),
    "google_api_key": (g.google_key, ["maps key {}", "GOOGLE {}"]),
    "jwt": (g.jwt, ["Authorization: Bearer {}", "session {}"]),
    "private_key": (g.private_key, ["my key:\n{}\n", "deploy key\n{}"]),
    "aws_secret_access_key": (g.aws_secret, ["aws_secret_access_key = {}", "AWS secret: {}"]),
    "swift_bic": (lambda rng: rng.choice(["DEUTDEFF", "BOFAUS3N", "NWBKGB2L", "BNPAFRPPXXX", "CHASUS33"]),
                  ["SWIFT code {}", "BIC: {}"]),
    "ein": (lambda rng: f"{rng.choice(['12', '45', '94', '27', '81'])}-{rng.randint(1000000, 9999999)}",
            ["EIN {} on the form", "employer identification number {}"]),
    "passport": (lambda rng: rng.choice("ACEHKX") + str(rng.randint(10000000, 99999999)),
                 ["passport number {}", "Passport: {}"]),
    "date_of_birth": (lambda rng: rng.choice([f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/19{rng.randint(40, 99)}",
                                              f"19{rng.randint(40, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                                              f"March {rng.randint(1, 28)}, 19{rng.randint(40, 99)}"]),
                      ["DOB: {}", "born on {} in Ohio", "date of birth {}"]),
    "generic_secret": (lambda rng: g.assigned_secret(rng)[1], ["DB_PASSWORD={}", 'client_secret: "{}"']),
    "gitlab_token": (g.gitlab_token, ["GITLAB_TOKEN={}", "push with {}"]),
    "slack_webhook_url": (lambda rng: g.slack_webhook(rng)[8:], ["webhook https://{}", "post to https://{} now"]),
    "stripe_test_key": (g.stripe_test_key, ["stripe test {}", "key {}"]),
    "twilio_api_key": (g.twilio_api_key, ["twilio key {}", "SID {}"]),
    "sendgrid_api_key": (g.sendgrid_key, ["SENDGRID_API_KEY={}", "mail key {}"]),
    "mailgun_api_key": (g.mailgun_key, ["mailgun {}", "MG {}"]),
    "huggingface_token": (g.huggingface_token, ["HF_TOKEN={}", "login --token {}"]),
    "npm_token": (g.npm_token, ["//registry.npmjs.org/:_authToken={}", "npm {}"]),
    "pypi_token": (g.pypi_token, ["password = {}", "twine -p {}"]),
    "dockerhub_token": (g.dockerhub_token, ["docker login -p {}", "hub {}"]),
    "azure_storage_account_key": (g.azure_storage_key, ["AccountName=acme;AccountKey={};EndpointSuffix=core.windows.net"]),
    "newrelic_key": (g.newrelic_key, ["NEW_RELIC_KEY {}", "nr {}"]),
    "shopify_token": (g.shopify_token, ["X-Shopify-Access-Token: {}", "shop {}"]),
    "atlassian_token": (g.atlassian_token, ["JIRA_API_TOKEN={}", "atlassian {}"]),
    "square_token": (g.square_token, ["SQUARE_TOKEN={}", "square {}"]),
    "age_secret_key": (g.age_secret_key, ["# public key: age1...\n{}", "identity {}"]),
    "discord_bot_token": (g.discord_bot_token, ["DISCORD_TOKEN={}", "discord bot {}"]),
    "discord_webhook_url": (lambda rng: g.discord_webhook(rng)[8:], ["curl https://{}"]),
    "telegram_bot_token": (g.telegram_bot_token, ["https://api.telegram.org/bot{}/getMe", "bot token {}"]),
    "braintree_access_token": (g.braintree_token, ["BT_TOKEN={}", "braintree {}"]),
    "kubernetes_service_account_token": (g.kubernetes_sa_token, ["Authorization: Bearer {}", "sa token {}"]),
}


def _plant(rng: random.Random, value: str, template: str) -> tuple[str, int, int]:
    before, after = prompt_text(rng, rng.randint(80, 400)), prompt_text(rng, rng.randint(80, 400))
    sentence = template.format(value)
    text = f"{before}\n\n{sentence}\n\n{after}"
    start = len(before) + 2 + sentence.index(value)
    return text, start, start + len(value)


def external(scanner: Scanner, verbose: bool) -> None:
    examples = external_set.load()
    score = external_set.score(examples, scanner)
    negatives = sum(score.negatives.values())
    print(f"external set: {len(examples)} examples from {len({e.source for e in examples})} projects "
          f"({sum(score.planted.values())} in-scope positives, {negatives} in-scope negatives, "
          f"{score.out_of_scope} out of scope)")
    print(f"{'type':34s} {'positives':>9s} {'recall':>8s}")
    for kind in sorted(score.planted):
        print(f"{kind:34s} {score.planted[kind]:9d} {score.recall(kind):8.3f}")
    print(f"false positives on negatives: {sum(score.flagged.values())} of {negatives} ({score.fp_rate():.4f})")
    for kind in sorted(score.flagged):
        print(f"  {kind:50s} {score.flagged[kind]:3d} of {score.negatives[kind]:3d}")
    if verbose:
        for ex in score.missed:
            print(f"missed {ex.expect}: {ex.source} {ex.rule}: {ex.text[:100]!r}")
        for ex, types in score.false_positives:
            print(f"flagged {types}: {ex.source} {ex.rule}: {ex.text[:100]!r}")


@attrs.frozen
class Generated:
    planted: Counter[str]
    found: Counter[str]
    lookalike_runs: int
    fired: Counter[str]       # findings on a planted look-alike, per type
    background: Counter[str]  # findings in the prompt text around it


def score_generated(scanner: Scanner, prompts: int, seed: int) -> Generated:
    rng = random.Random(seed)
    planted, found = Counter(), Counter()
    per_type = max(1, prompts // (2 * len(PLANTS)))
    for kind, (make, templates) in PLANTS.items():
        for _ in range(per_type):
            text, start, end = _plant(rng, make(rng), rng.choice(templates))
            planted[kind] += 1
            if any(h.type == kind and (h.start, h.end) == (start, end) for h in scanner.scan(text)):
                found[kind] += 1

    lookalike_runs, fired = 0, Counter()
    per_lookalike = max(1, prompts // (2 * len(g.LOOKALIKES)))
    background = Counter()
    for name, make in g.LOOKALIKES.items():
        for _ in range(per_lookalike):
            text, start, end = _plant(rng, make(rng), "see {} in the ticket")
            lookalike_runs += 1
            for h in scanner.scan(text):
                if h.start < end and start < h.end:
                    fired[h.type] += 1
                else:
                    background[h.type] += 1

    return Generated(planted, found, lookalike_runs, fired, background)


def generated(scanner: Scanner, prompts: int, seed: int) -> None:
    score = score_generated(scanner, prompts, seed)
    planted, found, fired, lookalike_runs = score.planted, score.found, score.fired, score.lookalike_runs
    per_lookalike = lookalike_runs // len(g.LOOKALIKES)
    total = sum(planted.values()) + lookalike_runs
    print(f"corpus: {total} prompts ({sum(planted.values())} with planted values, {lookalike_runs} with look-alikes), "
          f"seed {seed}")
    print(f"{'detector':32s} {'planted':>8s} {'recall':>8s} {'FP on look-alikes':>18s}")
    for kind in PLANTS:
        recall = found[kind] / planted[kind]
        print(f"{kind:32s} {planted[kind]:8d} {recall:8.3f} {fired[kind] / lookalike_runs:18.4f}")
    others = sorted(set(fired) - set(PLANTS))
    for kind in others:
        print(f"{kind:32s} {'-':>8s} {'-':>8s} {fired[kind] / lookalike_runs:18.4f}")
    print(f"look-alike kinds: {', '.join(g.LOOKALIKES)} ({per_lookalike} each)")
    print(f"findings in the surrounding prompt text (no value planted there): {dict(score.background) or 0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("external", "generated", "both"), default="both")
    parser.add_argument("--prompts", type=int, default=3000, help="size of the generated corpus")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated corpus")
    parser.add_argument("--verbose", action="store_true", help="list every missed and flagged external example")
    args = parser.parse_args()
    scanner = Scanner()
    if args.set in ("generated", "both"):
        generated(scanner, args.prompts, args.seed)
    if args.set == "both":
        print()
    if args.set in ("external", "both"):
        external(scanner, args.verbose)


if __name__ == "__main__":
    main()
