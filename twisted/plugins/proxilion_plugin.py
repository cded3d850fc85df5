"""twistd plugin: `twistd -n proxilion [options]`.

The only module that touches the global reactor. Keep imports light: twistd
imports every plugin module just to list them.
"""

from __future__ import annotations

import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


def _options_class() -> type[usage.Options]:
    from proxilion.config import SPECS

    params = [["config", "c", None, "YAML config file (env PROXILION_CONFIG)."]]
    flags = []
    for spec in SPECS:
        if spec.file_only:
            continue
        env = f" [env {spec.env}]" if spec.env else ""
        default = "" if spec.default in (None, "", {}, ()) or spec.secret else f" (default: {spec.default})"
        if spec.is_flag:
            flags.append([spec.cli_flag, None, spec.cli_help + env])
        elif not spec.repeatable:
            params.append([spec.option, None, None, spec.help + default + env])

    class Options(usage.Options):
        synopsis = "[options]"
        longdesc = (
            "Proxilion GRC: an AI security proxy. Settings come from these options, "
            "then the environment, then the --config YAML file, then defaults."
        )
        optParameters = params
        optFlags = flags

        def __init__(self) -> None:
            super().__init__()
            self["upstream"] = []

        def opt_upstream(self, value: str) -> None:
            """Point a provider at another base URL: NAME=URL (repeatable) [env PROXILION_UPSTREAM_<NAME>]."""
            self["upstream"].append(value)

        def postOptions(self) -> None:
            from proxilion.config import ConfigError, load_settings

            given = {}
            for spec in SPECS:
                if spec.file_only:
                    continue
                if spec.is_flag:
                    value = (not spec.default) if self.get(spec.cli_flag) else None
                else:
                    value = self.get(spec.option)
                given[spec.name] = value
            try:
                self.settings = load_settings(given, config_file=self["config"])
            except ConfigError as e:
                # One clear line, no traceback, non-zero exit.
                sys.stderr.write(f"proxilion: configuration error: {e}\n")
                raise SystemExit(2) from None

    return Options


@implementer(IServiceMaker, IPlugin)
class ProxilionServiceMaker:
    tapname = "proxilion"
    description = "Proxilion GRC AI security proxy (proxy :8787, admin :8788)."

    @property
    def options(self) -> type[usage.Options]:
        return _options_class()

    def makeService(self, options: usage.Options):  # type: ignore[no-untyped-def]
        from proxilion.reactor import install_unless_chosen

        install_unless_chosen()
        from twisted.internet import reactor

        from proxilion.app import build
        from proxilion.logs import make_observer
        from proxilion.service import exit_when_start_fails, report_to_systemd, stop_on_signals

        from proxilion.inspect.policy import PolicyError

        settings = options.settings
        try:
            app = build(settings, reactor, make_observer(settings.log_format, settings.log_level, clock=reactor), handle_sighup=True)
        except (PolicyError, ValueError) as e:
            # A policy error lists each problem on its own line; startup errors are one line.
            problems = " ".join(line.strip() for line in str(e).splitlines())
            sys.stderr.write(f"proxilion: configuration error: {'policy ' if isinstance(e, PolicyError) else ''}{problems}\n")
            raise SystemExit(2) from None
        reactor.callWhenRunning(stop_on_signals, reactor)
        report_to_systemd(reactor, app.root)
        exit_when_start_fails(reactor, app.root)
        return app.root


serviceMaker = ProxilionServiceMaker()
