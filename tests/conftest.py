"""Shared test setup: make tests/support importable as `support`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
