"""A fake AI provider: a real HTTP server speaking the providers' wire formats.

Tests, demos and benchmarks point the proxy (or an SDK) at it. See
`FakeProvider` for the scripting headers and the control API.
"""

from proxilion.fakeprovider._resource import FakeProvider, Script, make_site

__all__ = ["FakeProvider", "Script", "make_site"]
