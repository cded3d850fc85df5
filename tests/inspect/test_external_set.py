"""Targets on data we did not write (tests/data/external), and the generated corpus unchanged.

Recall >= 0.98 for every type on the external set, <= 2 % false positives on
its negatives. A type that misses the target is pinned at its measured level
in SHORTFALLS, with the reason, so it cannot slip further unnoticed; raising
its figure means removing the entry.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

import external_set
from proxilion.inspect.scanner import Scanner

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import inspect_corpus  # noqa: E402

TARGET_RECALL = 0.98
TARGET_FP_RATE = 0.02
# type -> (measured recall floor, why it misses the target)
SHORTFALLS = {
    "generic_secret": (0.91, "detect-secrets' keyword lines with a value of spaced words ('value with quotes and "
                             "spaces': read as text, as translation files are) or an unquoted value with a comma "
                             "(secrete = A,.:-¨@*¿?!: a comma ends an unquoted value, as in a call's arguments)"),
    "mbi": (0.83, "a lower-case MBI (1eg4-te5-mk73): the code triggers are upper case; a lower-case layout "
                  "trigger was measured at 274-297 MB/s on prose, under the 300 MB/s floor"),
}
SCANNER = Scanner()
SCORE = external_set.score(external_set.load(), SCANNER)


def test_every_example_records_its_source_and_licence():
    examples = external_set.load()
    assert len(examples) > 900
    for path in external_set.DATA.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert '"commit": "' in line and '"license": "' in line and '"path": "' in line
    assert {e.scope for e in examples} == {"in", "out"}
    assert all(e.why for e in examples if e.scope == "out")


@pytest.mark.parametrize("kind", sorted(SCORE.planted))
def test_recall_per_type(kind):
    floor = SHORTFALLS.get(kind, (TARGET_RECALL, ""))[0]
    missed = [e.text[:80] for e in SCORE.missed if e.expect == kind]
    assert SCORE.recall(kind) >= floor, missed


def test_shortfalls_are_still_short():
    """An entry whose type now meets the target must go (the floor would hide a later slip)."""
    for kind in SHORTFALLS:
        assert SCORE.recall(kind) < TARGET_RECALL, f"{kind} meets the target now: drop it from SHORTFALLS"


def test_false_positives_on_negatives():
    assert SCORE.fp_rate() <= TARGET_FP_RATE, [(e.text[:80], t) for e, t in SCORE.false_positives]


def test_generated_corpus_unchanged():
    score = inspect_corpus.score_generated(SCANNER, prompts=1200, seed=7)
    assert {k: score.found[k] for k in score.planted} == dict(score.planted)
    assert not score.fired and not score.background
