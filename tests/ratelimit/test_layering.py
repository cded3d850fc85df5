"""The limiter needs a request's identity, not the proxy: the identity value lives in a core module."""

import ast
import pathlib
import subprocess
import sys

import attrs

import proxilion.ratelimit

_RATELIMIT = pathlib.Path(proxilion.ratelimit.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_limiter_imports_nothing_from_the_proxy():
    offending = {path.name: sorted(n for n in _imports(path) if n.startswith("proxilion.proxy"))
                 for path in _RATELIMIT.glob("*.py")}
    assert {name: found for name, found in offending.items() if found} == {}


def test_the_proxy_and_the_limiter_share_one_identity_type():
    from proxilion.identity_key import Identity
    from proxilion.proxy import identity

    assert identity.Identity is Identity
    assert {"key", "tenant"} <= {a.name for a in attrs.fields(Identity)}


def test_the_identity_module_is_pure():
    subprocess.run([sys.executable, "-c", "import sys, proxilion.identity_key; "
                    "assert 'twisted' not in sys.modules, 'twisted imported'"], check=True)
