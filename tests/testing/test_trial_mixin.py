"""trial runs tests/testing/trial_mixin.py, the mixin's example, and every test in it passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODULE = Path(__file__).with_name("trial_mixin.py")


def test_the_trial_module_passes(tmp_path: Path) -> None:
    # trial writes _trial_temp in its working directory: keep it out of the checkout.
    run = subprocess.run([sys.executable, "-m", "twisted.trial", str(MODULE)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})

    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASSED (successes=3)" in run.stdout, run.stdout
