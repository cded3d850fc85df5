"""Build tests/data/external/*.jsonl from other projects' detector tests.

    python3 scripts/build_external_set.py GITLEAKS_GIT PRESIDIO_GIT DETECT_SECRETS_GIT

Each argument is a git directory (a bare clone or a `.git`); the files are
read at HEAD with `git show`, and every example records the repository, path
and commit it came from. Only literal strings are taken: gitleaks examples
built by its random generator (`secrets.NewSecret`) and strings assembled at
run time are left out, as they are a generator's output, not an author's
example. What each example is expected to be, and why where that is a
judgement, comes from the tables in tests/data/external/mapping.py.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "external"
sys.path.insert(0, str(OUT))

import mapping  # noqa: E402


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


def _row(text, expect, source, path, commit, license_, scope="in", why="", start=None, end=None, rule=""):
    row = {"text": text, "expect": expect, "scope": scope, "rule": rule, "source": source, "path": path,
           "commit": commit, "license": license_}
    if start is not None:
        row["start"], row["end"] = start, end
    if why:
        row["why"] = why
    return row


# --- gitleaks: Go rule files with tps/fps string slices ---------------------------------

_GO_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|//[^\n]*|/\*.*?\*/|[A-Za-z_][A-Za-z0-9_.]*|\S', re.S)


def _go_string(tok: str) -> str:
    return tok[1:-1] if tok.startswith("`") else ast.literal_eval(tok)


def _literals(statement: str) -> list[tuple[str, str | None]]:
    """(literal, identifier) of each string in a tps/fps statement that stands alone as an element.

    A literal inside a call other than append/GenerateSampleSecrets, or joined to
    anything by `+`, is built at run time and skipped. For GenerateSampleSecrets(id, s)
    the identifier comes along, as gitleaks puts it in the sample lines.
    """
    toks = [t for t in _GO_TOKEN.findall(statement) if not t.startswith(("//", "/*"))]
    out: list[tuple[str, str | None]] = []
    stack: list[str] = []
    for i, tok in enumerate(toks):
        if tok in ("(", "{"):
            stack.append(toks[i - 1] if tok == "(" and i else tok)
        elif tok in (")", "}"):
            if stack:
                stack.pop()
        elif tok[0] in "\"`":
            prev, nxt = toks[i - 1] if i else "", toks[i + 1] if i + 1 < len(toks) else ""
            if prev == "+" or nxt == "+":
                continue
            inside = stack[-1] if stack else ""
            if inside in ("{", "append"):
                out.append((_go_string(tok), None))
            elif inside.endswith("GenerateSampleSecrets") and prev == ",":
                out.append((_go_string(tok), _go_string(toks[i - 2])))
            elif inside.endswith("GenerateSampleSecret") and prev == ",":
                out.append((f'{_go_string(toks[i - 2])}_api_token = "{_go_string(tok)}"', None))
    return out


def _statements(body: str, name: str) -> list[str]:
    """The text of each `name := f(...)` / `name = []string{...}` statement of a function body."""
    found = []
    for m in re.finditer(rf"^\s*{name}\s*:?=\s*", body, re.M):
        depth, end = 0, m.end()
        for tok in _GO_TOKEN.finditer(body, m.end()):
            if tok.group() in ("(", "{", "["):
                depth += 1
            elif tok.group() in (")", "}", "]"):
                depth -= 1
                if depth == 0:
                    end = tok.end()
                    break
        found.append(body[m.start():end])
    return found


def gitleaks(git_dir: str) -> list[dict]:
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    folder = "cmd/generate/config/rules/"
    rows = []
    for path in sorted(_git(git_dir, "ls-tree", "--name-only", "HEAD", folder).split()):
        if not path.endswith(".go"):
            continue
        source = _git(git_dir, "show", f"HEAD:{path}")
        for func in re.split(r"\nfunc ", source)[1:]:
            rule = re.search(r'RuleID:\s*"([^"]+)"', func)
            if not rule:
                continue
            rule_id = rule.group(1)
            expect, scope, why = mapping.gitleaks_rule(rule_id)
            for statement in _statements(func, "tps"):
                for text, ident in _literals(statement):
                    if ident is not None:
                        text = mapping.GITLEAKS_SAMPLE.format(i=ident, s=text)
                    e, s, w = mapping.case_override("gitleaks", rule_id, text, expect, scope, why)
                    rows.append(_row(text, e, "gitleaks/gitleaks", path, commit, "MIT", s, w, rule=rule_id))
            for statement in _statements(func, "fps"):
                for text, _ in _literals(statement):
                    e, s, w = mapping.case_override("gitleaks", rule_id, text, "none", scope, why if scope != "in" else "")
                    rows.append(_row(text, e, "gitleaks/gitleaks", path, commit, "MIT", s, w, rule=rule_id))
    return rows


# --- Presidio: parametrized recognizer tests with spans ----------------------------------

def _parametrize_cases(source: str):
    """(argument names, cases) of every @pytest.mark.parametrize with literal cases."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "parametrize" and len(node.args) >= 2:
            try:
                names = [n.strip() for n in ast.literal_eval(node.args[0]).split(",")]
                cases = ast.literal_eval(node.args[1])
            except (ValueError, SyntaxError, AttributeError):
                continue
            yield names, cases


def presidio(git_dir: str) -> list[dict]:
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    rows = []
    for name, (expect, scope, why) in mapping.PRESIDIO_FILES.items():
        path = f"presidio-analyzer/tests/test_{name}_recognizer.py"
        for names, cases in _parametrize_cases(_git(git_dir, "show", f"HEAD:{path}")):
            text_at = next((i for i, n in enumerate(names) if n in ("text", "iban")), None)
            if text_at is None or "expected_len" not in names:
                continue
            spans_at = next(i for i, n in enumerate(names) if n in ("expected_res", "expected_positions", "expected_spans"))
            scores_at = next((i for i, n in enumerate(names) if "score" in n), None)
            for case in cases:
                text, count, spans = case[text_at], case[names.index("expected_len")], case[spans_at]
                if count == 0:
                    e, s, w = mapping.case_override("presidio", name, text, "none", scope, why if scope != "in" else "")
                    rows.append(_row(text, e, "microsoft/presidio", path, commit, "MIT", s, w, rule=name))
                    continue
                scores = case[scores_at] if scores_at is not None else ()
                if not isinstance(scores, (tuple, list)):
                    scores = (scores,) * len(spans)  # one score for every span
                for k, (start, end) in enumerate(spans):
                    e, s, w = expect, scope, why
                    score = scores[k] if k < len(scores) else None
                    top = score[1] if isinstance(score, tuple) else score
                    if s == "in" and isinstance(top, float) and top < 0.5 and name not in mapping.PRESIDIO_FLAT_SCORE:
                        s, w = "out", "Presidio itself scores it below 0.5: a weak candidate, not a finding"
                    e, s, w = mapping.case_override("presidio", name, text[start:end], e, s, w)
                    rows.append(_row(text, e, "microsoft/presidio", path, commit, "MIT", s, w, start, end, rule=name))
    return rows


# --- detect-secrets: plugin tests parametrized on (payload, should_flag) -----------------

def detect_secrets(git_dir: str) -> list[dict]:
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    rows = []
    for name, (expect, scope, why) in mapping.DETECT_SECRETS_FILES.items():
        path = f"tests/plugins/{name}_test.py"
        for names, cases in _parametrize_cases(_git(git_dir, "show", f"HEAD:{path}")):
            flag_at = next((i for i, n in enumerate(names) if n in ("should_flag", "expected_result")), None)
            if flag_at is None or len(names) != 2:
                continue
            for case in cases:
                text, flag = case[1 - flag_at], case[flag_at]
                if not isinstance(text, str) or not isinstance(flag, bool):
                    continue
                e = expect if flag else "none"
                e, s, w = mapping.case_override("detect-secrets", name, text, e, scope, why if flag or scope != "in" else "")
                rows.append(_row(text, e, "Yelp/detect-secrets", path, commit, "Apache-2.0", s, w, rule=name))
    return rows


def detect_secrets_keyword(git_dir: str) -> list[dict]:
    """detect-secrets' keyword plugin cases: (line, secret or None) lists per file language.

    The lines are built with str.format from the test module's string constants, so those
    constants and the lists are evaluated (string expressions only, no builtins); a case
    using anything else (the random LONG_LINE) is skipped. A prompt carries no file
    language, so a line expected differently in two languages is out of scope.
    """
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    path = "tests/plugins/keyword_test.py"
    tree = ast.parse(_git(git_dir, "show", f"HEAD:{path}"))
    consts, cases = {}, {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                consts[name] = node.value.value
            elif name.endswith("_TEST_CASES") and isinstance(node.value, ast.List):
                for elt in node.value.elts:
                    try:
                        line, secret = eval(compile(ast.Expression(elt), path, "eval"), {"__builtins__": {}}, consts)
                    except NameError:
                        continue
                    cases.setdefault(line, set()).add(secret)
    expect, scope, why = mapping.DETECT_SECRETS_FILES["keyword"]
    rows = []
    for line, secrets in cases.items():
        if len(secrets) > 1:
            rows.append(_row(line, "generic_secret", "Yelp/detect-secrets", path, commit, "Apache-2.0", "out",
                             "a secret in one file language and not in another; a prompt has no language",
                             rule="keyword"))
            continue
        secret = secrets.pop()
        if secret is None and line in mapping.KEYWORD_LANGUAGE_NEGATIVES:
            rows.append(_row(line, "none", "Yelp/detect-secrets", path, commit, "Apache-2.0", "out",
                             mapping.KEYWORD_LANGUAGE_WHY, rule="keyword"))
        elif secret is None:
            rows.append(_row(line, "none", "Yelp/detect-secrets", path, commit, "Apache-2.0", rule="keyword"))
        else:
            start = line.index(secret)
            rows.append(_row(line, expect, "Yelp/detect-secrets", path, commit, "Apache-2.0", scope, why,
                             start, start + len(secret), rule="keyword"))
    return rows


def main() -> None:
    gl, pr, ds = sys.argv[1:4]
    for name, rows in (("gitleaks", gitleaks(gl)), ("presidio", presidio(pr)), ("detect_secrets", detect_secrets(ds) + detect_secrets_keyword(ds))):
        seen = set()
        with open(OUT / f"{name}.jsonl", "w") as f:
            for row in rows:
                key = (row["text"], row["expect"], row.get("start"))
                if key not in seen:
                    seen.add(key)
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {len(seen)} examples")


if __name__ == "__main__":
    main()
