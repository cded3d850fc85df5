import argparse
import io
import json

from proxilion.inspect import scan_command


def _run(argv, stdin):
    code, out, _ = _run_both(argv, stdin)
    return code, out


def _run_both(argv, stdin):
    parser = argparse.ArgumentParser()
    scan_command.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = scan_command.run(parser.parse_args(argv), io.StringIO(stdin), out, err)
    return code, out.getvalue(), err.getvalue()


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


def test_bad_policy_errors_are_lines_on_stderr(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - id: x\n    action: deny\n  - id: y\n    detectors: [nope]\n")
    code, out, err = _run_both(["--policy", str(policy)], "x")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert all(line.startswith(f"proxilion scan: {policy}: rule ") for line in lines)
    assert "rule 'x' (#1): action" in lines[0] and "'y' (#2): detectors: unknown field" in lines[1]


def test_redact_verdict_prints_the_redacted_text():
    body = json.dumps({"messages": [{"role": "user", "content": "mail a@corp.com please"}]})
    code, out = _run(["--provider", "openai", "--path", "/v1/chat/completions"], body)
    result = json.loads(out)
    assert code == 1 and result["decision"] == "redact"
    redacted = json.loads(result["redacted"])
    assert "a@corp.com" not in result["redacted"]
    assert redacted["messages"][0]["content"].startswith("mail ") and redacted["messages"][0]["content"].endswith(" please")

    code, out = _run(["--jsonl"], json.dumps("mail a@corp.com please") + "\n" + json.dumps("hello") + "\n")
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["redacted"].startswith("mail ") and "a@corp.com" not in first["redacted"]
    assert "redacted" not in second


def test_help_names_the_exit_codes():
    parser = argparse.ArgumentParser()
    scan_command.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    for needle in ("0 ", "1 ", "2 ", "exit"):
        assert needle in text
    assert "redacted" in text
