"""The `proxilion` command: run, scan, check-config, ca, policy, fake-provider, options."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from proxilion import __version__

__all__ = ["main"]


def _run(options: list[str]) -> int:
    """Exec `twistd --nodaemon --pidfile= proxilion ...`: the same process users run under systemd."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    argv = [twistd, "--nodaemon", "--pidfile=", "proxilion", *options]
    os.execv(twistd, argv)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from proxilion.config import ConfigError, load_settings, settings_warnings
    from proxilion.inspect.policy import PolicyError, load_policy, policy_warnings

    try:
        settings = load_settings({"policy_file": args.policy}, config_file=args.config)
        policy = load_policy(settings.policy_file)
    except ConfigError as e:
        print(f"proxilion: configuration error: {e}", file=sys.stderr)
        return 2
    except PolicyError as e:
        for line in e.lines():
            print(f"proxilion: policy error: {line}", file=sys.stderr)
        return 2
    for warning in settings_warnings(settings) + policy_warnings(policy):
        print(f"proxilion: warning: {warning}", file=sys.stderr)
    print(f"configuration ok: proxy :{settings.port}, admin :{settings.admin_port}, "
          f"rate limits {settings.rate_limit_store}, analytics {'postgresql' if settings.analytics_dsn else 'sqlite'}, "
          f"policy {settings.policy_file or '(shipped default)'}")
    return 0


def _show_default_policy(args: argparse.Namespace) -> int:
    from proxilion.inspect.policy import default_policy_text

    sys.stdout.write(default_policy_text())
    return 0


def _options_markdown(args: argparse.Namespace) -> int:
    from proxilion.config import SPECS

    print("| Option | Environment | Config file key | Default | Meaning |")
    print("|---|---|---|---|---|")
    for spec in SPECS:
        option = "(config file only)" if spec.file_only else f"`--{spec.cli_flag}`"
        env = f"`{spec.env}`" if spec.env else ("`PROXILION_UPSTREAM_<NAME>`" if spec.name == "upstreams" else "")
        default = "" if spec.default in (None, "", {}, ()) else f"`{spec.default}`"
        print(f"| {option} | {env} | `{spec.name}` | {default} | {spec.help} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from proxilion.fakeprovider import command as fake_provider
    from proxilion.inspect import scan_command
    from proxilion.tls import command as ca_command

    parser = argparse.ArgumentParser(prog="proxilion", description="Proxilion GRC: an AI security proxy.")
    parser.add_argument("--version", action="version", version=f"proxilion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # Listed for --help only: main() hands everything after "run" to twistd's own option parser.
    sub.add_parser("run", help="run the proxy (same as `twistd -n proxilion`); `proxilion run --help` lists its options")

    scan = sub.add_parser("scan", help="scan a request body or text from stdin and print findings and the decision")
    scan_command.add_arguments(scan)
    scan.set_defaults(handler=lambda a: scan_command.run(a, sys.stdin, sys.stdout, sys.stderr))

    check = sub.add_parser("check-config", help="validate settings (env, --config) and the policy file, then exit",
                           description="Exit 0 when settings and policy are valid (warnings about likely mistakes "
                                       "go to stderr, one line each); 2 with one line per error on stderr.")
    check.add_argument("--config", help="YAML config file")
    check.add_argument("--policy", help="policy YAML file")
    check.set_defaults(handler=_check_config)

    policy = sub.add_parser("policy", help="the shipped inspection policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_sub.add_parser("show-default", help="print the shipped default policy (YAML, with its comments)")
    show.set_defaults(handler=_show_default_policy)

    fake = sub.add_parser("fake-provider", help="run the fake AI provider (OpenAI, Anthropic, Gemini, Cohere, Bedrock wire formats)")
    fake_provider.add_arguments(fake)
    fake.set_defaults(handler=fake_provider.run)

    ca = sub.add_parser("ca", help="create and show the TLS interception CA (init, show, export)")
    ca_command.add_arguments(ca)

    options = sub.add_parser("options", help="print the settings table (Markdown) used in the README")
    options.set_defaults(handler=_options_markdown)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        # argparse cannot pass through options it does not know (`run --port 1`).
        options = argv[1:]
        return _run(options[1:] if options[:1] == ["--"] else options)
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
