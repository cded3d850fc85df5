"""The provider names and their hosts have one home, proxilion/providers/names.py; the rest derive from it."""

import pathlib
import re
from typing import get_args

import proxilion
from proxilion import config
from proxilion.analytics import event
from proxilion.inspect import policy
from proxilion.providers import names
from proxilion.proxy import routing


def test_the_names_are_the_literal_type_and_unknown_comes_last():
    assert names.PROVIDER_NAMES == get_args(names.Provider)
    assert names.PROVIDER_LABELS == (*names.PROVIDER_NAMES, "unknown")
    assert set(names.PROVIDER_HOSTS) == set(names.PROVIDER_NAMES)


def test_settings_policy_audit_and_routing_use_the_one_list():
    assert config.PROVIDER_NAMES is names.PROVIDER_NAMES
    assert policy.PROVIDERS is names.PROVIDER_LABELS
    assert event.PROVIDERS is names.PROVIDER_LABELS
    assert routing.PROVIDER_HOSTS is names.PROVIDER_HOSTS


def test_no_other_module_spells_the_list_out():
    root = pathlib.Path(proxilion.__file__).parent
    spelled = re.compile(r"""["']openai["'],\s*["']anthropic["']""")
    found = [str(path.relative_to(root)) for path in root.rglob("*.py")
             if path.name != "names.py" and "fakeprovider" not in path.parts and spelled.search(path.read_text())]
    assert found == []
