"""The transparent listener (TLS_PORT, leaf by SNI), CA rotation by SIGHUP, and what /status says about the CA."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from proxilion.tls.ca import create_ca
from support.daemon import Daemon, eventually, free_port, http_json, running

from .conftest import daemon_env, upstreams


def curl_transparent(port: int, cafile: Path, body: str) -> tuple[int, str]:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--resolve", f"api.openai.com:{port}:127.0.0.1", "--cacert", str(cafile),
         "-H", "authorization: Bearer sk-test-transparent", "-H", "content-type: application/json", "-d", body,
         "-w", "\n%{http_code}", f"https://api.openai.com:{port}/v1/chat/completions"],
        capture_output=True, text=True, timeout=30,
    )
    text, _, code = done.stdout.rpartition("\n")
    return int(code or 0), text + done.stderr


def test_curl_reaches_the_provider_through_the_transparent_listener(daemon: Daemon, ca_dir: Path) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
    status, text = curl_transparent(daemon.tls_port, ca_dir / "ca.crt", body)  # type: ignore[attr-defined]
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"]
    assert daemon.metric("proxilion_tls_handshakes_total", mode="transparent", result="ok") >= 1
    blocked = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}]})
    assert curl_transparent(daemon.tls_port, ca_dir / "ca.crt", blocked)[0] == 403  # type: ignore[attr-defined]


@pytest.mark.parametrize("sni", [None, "example.com"])
def test_no_or_unknown_sni_gets_an_alert_and_no_certificate(daemon: Daemon, sni: str | None) -> None:
    result = "no_sni" if sni is None else "unknown_host"
    before = daemon.metric("proxilion_tls_handshakes_total", mode="transparent", result=result)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", daemon.tls_port), timeout=10) as raw:  # type: ignore[attr-defined]
        with pytest.raises(ssl.SSLError) as e:
            context.wrap_socket(raw, server_hostname=sni)
    assert "ALERT" in str(e.value).upper() or "HANDSHAKE" in str(e.value).upper()
    assert daemon.metric("proxilion_tls_handshakes_total", mode="transparent", result=result) == before + 1


def _served_leaf(port: int, cafile: Path) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname="api.anthropic.com") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_replaced_ca_and_sighup_sign_new_leaves_and_status_shows_it(tmp_path: Path, ca_dir: Path, upstream_ca_dir: Path, fake_tls: str) -> None:
    live = tmp_path / "ca"
    live.mkdir()
    shutil.copy(ca_dir / "ca.crt", live / "ca.crt")
    shutil.copy(ca_dir / "ca.key", live / "ca.key")
    new = tmp_path / "new"
    create_ca(new, common_name="Proxilion Interception CA 2")
    tls_port = free_port()
    env = daemon_env(live, upstream_ca_dir, TLS_PORT=str(tls_port))
    with running(Daemon(tmp_path / "d", upstreams(fake_tls), env)) as d:
        old_leaf = _served_leaf(tls_port, ca_dir / "ca.crt")
        status = http_json("GET", d.admin_url + "/status")[2]["interception"]
        old_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
        assert status["ca"]["subject"] == old_cert.subject.rfc4514_string()
        assert status["ca"]["sha256_fingerprint"] == old_cert.fingerprint(old_cert.signature_hash_algorithm).hex(":").upper()  # type: ignore[arg-type]
        assert status["ca"]["days_to_expiry"] > 30

        # Replaced as a mounted Secret is: whole files swapped in.
        shutil.copy(new / "ca.key", live / "ca.key.tmp")
        shutil.copy(new / "ca.crt", live / "ca.crt.tmp")
        (live / "ca.key.tmp").replace(live / "ca.key")
        (live / "ca.crt.tmp").replace(live / "ca.crt")
        d.signal(signal.SIGHUP)
        eventually(lambda: d.metric("proxilion_tls_ca_reloads_total", result="ok") == 1, what="CA reload")
        new_leaf = _served_leaf(tls_port, new / "ca.crt")
        assert new_leaf.issuer != old_leaf.issuer
        with pytest.raises(ssl.SSLCertVerificationError):
            _served_leaf(tls_port, ca_dir / "ca.crt")
        status = http_json("GET", d.admin_url + "/status")[2]["interception"]
        assert "Interception CA 2" in status["ca"]["subject"] and status["last_reload_error"] is None


def test_audit_rows_record_how_the_client_came(daemon: Daemon, ca_dir: Path) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mode"}]})
    assert curl_transparent(daemon.tls_port, ca_dir / "ca.crt", body)[0] == 200  # type: ignore[attr-defined]
    http_json("POST", daemon.url + "/proxy/openai/v1/chat/completions", json.loads(body), {"authorization": "Bearer sk-explicit"})
    through_proxy = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--proxy", daemon.url, "--cacert", str(ca_dir / "ca.crt"), "-o", "/dev/null", "-w", "%{http_code}",
         "-H", "authorization: Bearer sk-test-connect", "-H", "content-type: application/json", "-d", body,
         "https://api.openai.com/v1/chat/completions"],
        capture_output=True, text=True, timeout=30,
    )
    assert through_proxy.stdout == "200", through_proxy.stderr

    def modes() -> set[str]:
        status, _, found = http_json("GET", daemon.admin_url + "/api/v1/events?limit=500", headers={"authorization": "Bearer t"})
        return {e["mode"] for e in found["events"]} if status == 200 else set()

    assert eventually(lambda: {"explicit", "connect", "transparent"} <= modes(), what="a row of each mode")
