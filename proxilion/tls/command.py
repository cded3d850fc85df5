"""`proxilion ca init|show|export`: create the interception CA and print what clients need to trust it."""

from __future__ import annotations

import argparse
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ca_command", required=True)
    init = sub.add_parser("init", help="write a new CA (ca.crt, ca.key with mode 0600) into --dir")
    init.add_argument("--dir", required=True, help="directory for ca.crt and ca.key (created if missing; existing files are not overwritten)")
    init.add_argument("--rsa", action="store_true", help="RSA 3072 instead of ECDSA P-256")
    init.set_defaults(handler=_init)
    for name, handler, text in (
        ("show", _show, "print subject, SHA-256 fingerprint and expiry of the CA (and of CA_EXTRA_CERT_FILE)"),
        ("export", _export, "print the CA certificate(s) in PEM, to install in clients' trust stores"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--cert", default=os.environ.get("CA_CERT_FILE"), help="CA certificate (default: env CA_CERT_FILE)")
        command.add_argument("--extra-cert", default=os.environ.get("CA_EXTRA_CERT_FILE"),
                             help="the other CA during a rotation (default: env CA_EXTRA_CERT_FILE)")
        command.set_defaults(handler=handler)


def _init(args: argparse.Namespace) -> int:
    from proxilion.tls.ca import CAError, create_ca, describe, load_certificate

    try:
        cert_path, key_path = create_ca(args.dir, use_rsa=args.rsa)
    except (CAError, OSError) as e:
        print(f"proxilion: ca init: {e}", file=sys.stderr)
        return 2
    info = describe(load_certificate(str(cert_path)))
    print(f"wrote {cert_path} and {key_path} (mode 0600)")
    print(f"subject: {info['subject']}\nsha256: {info['sha256_fingerprint']}\nexpires: {info['not_after']}")
    print(f"set CA_CERT_FILE={cert_path} CA_KEY_FILE={key_path} on every replica; clients trust {cert_path}")
    return 0


def _certificates(args: argparse.Namespace) -> list[x509.Certificate]:
    from proxilion.tls.ca import load_certificate

    if not args.cert:
        raise SystemExit("proxilion: ca: give --cert or set CA_CERT_FILE")
    certs = [load_certificate(args.cert)]
    if args.extra_cert:
        certs.append(load_certificate(args.extra_cert, "CA_EXTRA_CERT_FILE"))
    return certs


def _show(args: argparse.Namespace) -> int:
    from proxilion.tls.ca import CAError, describe

    try:
        certs = _certificates(args)
    except CAError as e:
        print(f"proxilion: ca show: {e}", file=sys.stderr)
        return 2
    for role, cert in zip(("signing", "extra"), certs):
        info = describe(cert)
        print(f"{role} CA\n  subject: {info['subject']}\n  sha256: {info['sha256_fingerprint']}\n"
              f"  expires: {info['not_after']} ({info['days_to_expiry']} days)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from proxilion.tls.ca import CAError

    try:
        certs = _certificates(args)
    except CAError as e:
        print(f"proxilion: ca export: {e}", file=sys.stderr)
        return 2
    for cert in certs:
        sys.stdout.write(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return 0
