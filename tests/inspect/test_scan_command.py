import argparse
import io
import json

from proxilion.inspect import scan_command


def _run(argv, stdin):
    parser = argparse.ArgumentParser()
    scan_command.add_arguments(parser)
    out = io.StringIO()
    code = scan_command.run(parser.parse_args(argv), io.StringIO(stdin), out)
    return code, out.getvalue()


def test_single_body():
    body = json.dumps({"messages": [{"role": "user", "content": "card 4111-1111-1111-1111"}]})
    code, out = _run(["--provider", "openai", "--path", "/v1/chat/completions"], body)
    result = json.loads(out)
    assert code == 1 and result["decision"] == "block"
    assert result["findings"] == [{"type": "credit_card", "category": "financial", "severity": "critical",
                                   "location": "messages[0].content", "start": 5, "end": 24, "action": "block",
                                   "rule": "block-cards-and-ssn"}]
    assert "4111" not in out


def test_clean_text_exit_zero():
    code, out = _run([], "nothing to see here")
    assert code == 0 and json.loads(out)["decision"] == "allow"


def test_jsonl():
    lines = "\n".join([json.dumps("mail a@corp.com"), json.dumps({"id": 7, "text": "hello"}), "42", ""])
    code, out = _run(["--jsonl"], lines)
    results = [json.loads(x) for x in out.splitlines()]
    assert [r.get("decision") for r in results] == ["redact", "allow", None]
    assert results[1]["id"] == 7 and results[2]["line"] == 3 and "error" in results[2]
    assert code == 2


def test_bad_policy(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - id: x\n    action: deny\n")
    code, out = _run(["--policy", str(policy)], "x")
    assert code == 2 and "rule 'x' (#1): action" in json.loads(out)["error"]
