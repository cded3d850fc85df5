"""packaging/: Swarm stack, NGINX, HAProxy, AWS ALB (Terraform)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT, run, tool

PACKAGING = ROOT / "packaging"


# ---- Docker Swarm stack ---------------------------------------------------


@pytest.fixture(scope="module")
def stack():
    return yaml.safe_load((PACKAGING / "docker-compose.ha.yml").read_text())


def test_compose_yamllint():
    result = run([tool("yamllint"), "--strict", "-c", ROOT / "tests/deploy/yamllint.yaml", PACKAGING])
    assert result.returncode == 0, result.stdout + result.stderr


def test_swarm_stack_is_the_guides(stack):
    assert stack["version"] == "3.8"
    service = stack["services"]["proxilion"]
    assert service["image"] == "proxilion:latest"
    deploy = service["deploy"]
    assert deploy["replicas"] == 3
    assert deploy["update_config"] == {"parallelism": 1, "delay": "10s", "failure_action": "rollback"}
    assert deploy["rollback_config"] == {"parallelism": 1, "delay": "10s"}
    assert deploy["restart_policy"] == {"condition": "on-failure", "delay": "5s", "max_attempts": 3}
    assert deploy["placement"]["constraints"] == ["node.role == worker"]
    assert deploy["placement"]["preferences"] == [{"spread": "node.labels.zone"}]
    assert service["ports"] == [{"target": 8787, "published": 8787, "mode": "host"}]
    assert service["healthcheck"] == {
        "test": ["CMD", "wget", "-q", "--spider", "http://localhost:8787/health"],
        "interval": "10s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "30s",
    }
    assert "proxilion-net" in service["networks"]
    assert stack["networks"]["proxilion-net"] == {"driver": "overlay", "attachable": True}


def test_swarm_stack_shared_state_and_drain(stack):
    service = stack["services"]["proxilion"]
    env = service["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379"
    assert env["RATE_LIMIT_STORE"] == "redis"
    assert env["ANALYTICS_DSN"].startswith("postgresql://") and "@postgres:5432/proxilion" in env["ANALYTICS_DSN"]
    assert {"redis", "postgres"} <= set(stack["services"])
    # Docker's default stop timeout (10 s) would cut the drain short.
    grace = float(service["stop_grace_period"].rstrip("s"))
    assert grace >= float(env["DRAIN_GRACE"]) + float(env["DRAIN_TIMEOUT"]) + 2
    targets = {s["target"] for s in service["secrets"]}
    assert targets == {"/etc/proxilion/ca/ca.crt", "/etc/proxilion/ca/ca.key"}
    assert env["CA_CERT_FILE"] == "/etc/proxilion/ca/ca.crt"
    assert env["CA_KEY_FILE"] == "/etc/proxilion/ca/ca.key"


def test_swarm_stack_env_names_real_settings(stack):
    from proxilion.config import SPECS

    names = {s.env for s in SPECS if s.env}
    env = stack["services"]["proxilion"]["environment"]
    assert set(env) <= names, set(env) - names


def _docker_stack_config():
    docker = shutil.which("docker")
    if not docker:
        return None
    probe = subprocess.run([docker, "stack", "config", "--help"], capture_output=True, text=True, timeout=20)
    return docker if probe.returncode == 0 else None


def test_docker_stack_config_accepts_it(tmp_path):
    docker = _docker_stack_config()
    if docker is None:
        pytest.skip("no docker client with `docker stack config` (schema check of the stack; structure is tested above)")
    env = {**os.environ, "ADMIN_TOKEN": "t", "POSTGRES_PASSWORD": "p"}
    result = run([docker, "stack", "config", "-c", PACKAGING / "docker-compose.ha.yml"], env=env)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "stack.yml"
    broken.write_text((PACKAGING / "docker-compose.ha.yml").read_text().replace("stop_grace_period:", "stop_grace_perod:"))
    assert run([docker, "stack", "config", "-c", broken], env=env).returncode != 0


# ---- TLS material for the load balancer checks ----------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    openssl = tool("openssl")
    d = tmp_path_factory.mktemp("tls")
    result = run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=proxy.example.com",
         "-keyout", d / "proxy.key", "-out", d / "proxy.crt"]
    )
    assert result.returncode == 0, result.stderr
    (d / "proxy.pem").write_text((d / "proxy.crt").read_text() + (d / "proxy.key").read_text())
    return d


# ---- NGINX ----------------------------------------------------------------


def nginx_check(tmp_path: Path, conf_text: str, cert: Path) -> subprocess.CompletedProcess:
    nginx = tool("nginx")
    conf_text = (
        conf_text.replace("/etc/ssl/proxy.crt", str(cert / "proxy.crt"))
        .replace("/etc/ssl/proxy.key", str(cert / "proxy.key"))
    )
    # The shipped names must resolve when nginx loads; test on loopback addresses.
    conf_text = re.sub(r"\bproxilion-(\d+):8787", r"127.0.0.\1:8787", conf_text)
    (tmp_path / "proxilion.conf").write_text(conf_text)
    (tmp_path / "temp").mkdir(exist_ok=True)
    (tmp_path / "nginx.conf").write_text(
        f"""
pid {tmp_path}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/temp/body;
    proxy_temp_path {tmp_path}/temp/proxy;
    fastcgi_temp_path {tmp_path}/temp/fastcgi;
    uwsgi_temp_path {tmp_path}/temp/uwsgi;
    scgi_temp_path {tmp_path}/temp/scgi;
    include {tmp_path}/proxilion.conf;
}}
"""
    )
    return run([nginx, "-t", "-e", "stderr", "-p", tmp_path, "-c", tmp_path / "nginx.conf"])


def test_nginx_accepts_the_config(tmp_path, cert):
    result = nginx_check(tmp_path, (PACKAGING / "nginx/proxilion.conf").read_text(), cert)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.search(r"\[(warn|emerg|alert|crit|error)\]", output), output


def test_nginx_check_catches_a_broken_config(tmp_path, cert):
    text = (PACKAGING / "nginx/proxilion.conf").read_text().replace("least_conn;", "least_con;")
    assert nginx_check(tmp_path, text, cert).returncode != 0


def test_nginx_is_the_guides():
    text = (PACKAGING / "nginx/proxilion.conf").read_text()
    for line in [
        "upstream proxilion_backend {",
        "least_conn;",
        "server proxilion-1:8787 weight=1 max_fails=3 fail_timeout=30s;",
        "server proxilion-2:8787 weight=1 max_fails=3 fail_timeout=30s;",
        "server proxilion-3:8787 weight=1 max_fails=3 fail_timeout=30s;",
        "keepalive 32;",
        "listen 443 ssl http2;",
        "server_name proxy.example.com;",
        "ssl_certificate /etc/ssl/proxy.crt;",
        "ssl_certificate_key /etc/ssl/proxy.key;",
        "proxy_pass http://proxilion_backend;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_connect_timeout 5s;",
        "proxy_read_timeout 60s;",
        "proxy_send_timeout 60s;",
        "proxy_buffering on;",
        "proxy_buffer_size 4k;",
        "proxy_buffers 8 4k;",
        "location /health {",
        "proxy_pass http://proxilion_backend/health;",
        "proxy_connect_timeout 2s;",
        "proxy_read_timeout 2s;",
    ]:
        assert re.search(rf"^\s*{re.escape(line)}\s*$", text, re.M), line


# ---- HAProxy --------------------------------------------------------------


def haproxy_check(tmp_path: Path, text: str, cert: Path) -> subprocess.CompletedProcess:
    haproxy = tool("haproxy")
    text = text.replace("/etc/ssl/proxy.pem", str(cert / "proxy.pem")).replace(
        "/run/haproxy/admin.sock", str(tmp_path / "admin.sock")
    )
    (tmp_path / "haproxy.cfg").write_text(text)
    # -dW: zero-warning mode, a warning fails the check.
    return run([haproxy, "-dW", "-c", "-f", tmp_path / "haproxy.cfg"])


def test_haproxy_accepts_the_config(tmp_path, cert):
    result = haproxy_check(tmp_path, (PACKAGING / "haproxy/haproxy.cfg").read_text(), cert)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_haproxy_check_catches_a_broken_config(tmp_path, cert):
    text = (PACKAGING / "haproxy/haproxy.cfg").read_text().replace("balance leastconn", "balance leastcon")
    assert haproxy_check(tmp_path, text, cert).returncode != 0


def test_haproxy_is_the_guides():
    text = (PACKAGING / "haproxy/haproxy.cfg").read_text()
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw.startswith((" ", "\t")):
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(" ".join(line.split()))
    expected = {
        "global": ["maxconn 50000", "log stdout format raw local0"],
        "defaults": [
            "mode http", "timeout connect 5s", "timeout client 60s", "timeout server 60s", "option httplog",
            "option dontlognull", "option http-server-close", "option forwardfor",
        ],
        "frontend proxilion_front": ["bind *:443 ssl crt /etc/ssl/proxy.pem", "default_backend proxilion_back"],
        "backend proxilion_back": [
            "balance leastconn", "option httpchk GET /health", "http-check expect status 200",
            "server proxilion-1 10.0.0.51:8787 check inter 5s fall 3 rise 2",
            "server proxilion-2 10.0.0.52:8787 check inter 5s fall 3 rise 2",
            "server proxilion-3 10.0.0.53:8787 check inter 5s fall 3 rise 2",
        ],
    }
    for section, lines in expected.items():
        assert section in sections, section
        for line in lines:
            assert line in sections[section], f"{section}: {line}"
    # Failover: a refused connection is retried on another server.
    assert "option redispatch 1" in sections["defaults"] and "retries 3" in sections["defaults"]


# ---- AWS ALB (Terraform) --------------------------------------------------


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


@pytest.fixture(scope="module")
def terraform():
    hcl2 = pytest.importorskip("hcl2", reason="pip: python-hcl2")
    with open(PACKAGING / "terraform/alb.tf") as f:
        data = _unquote(hcl2.load(f))
    resources = {}
    for block in data.get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                resources[(rtype, name)] = body
    variables = {name for block in data.get("variable", []) for name in block}
    return resources, variables, (PACKAGING / "terraform/alb.tf").read_text()


def test_alb_is_the_guides(terraform):
    resources, _, _ = terraform
    lb = resources[("aws_lb", "proxilion")]
    assert lb["name"] == "proxilion-alb"
    assert lb["internal"] is False
    assert lb["load_balancer_type"] == "application"
    assert lb["security_groups"] == ["aws_security_group.alb.id"]
    assert lb["subnets"] == "var.public_subnet_ids"
    tg = resources[("aws_lb_target_group", "proxilion")]
    assert (tg["name"], tg["port"], tg["protocol"], tg["vpc_id"]) == ("proxilion-tg", 8787, "HTTP", "var.vpc_id")
    (health,) = tg["health_check"]
    assert health == {
        "enabled": True, "healthy_threshold": 2, "interval": 10, "matcher": "200", "path": "/health",
        "port": "traffic-port", "protocol": "HTTP", "timeout": 5, "unhealthy_threshold": 3,
    }
    listener = resources[("aws_lb_listener", "proxilion")]
    assert listener["load_balancer_arn"] == "aws_lb.proxilion.arn"
    assert (listener["port"], listener["protocol"]) == ("443", "HTTPS")
    assert listener["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert listener["certificate_arn"] == "var.certificate_arn"
    (action,) = listener["default_action"]
    assert action == {"type": "forward", "target_group_arn": "aws_lb_target_group.proxilion.arn"}
    # Deregistration waits no longer than the drain (ALB's default is 300 s).
    assert tg["deregistration_delay"] <= 30


def test_alb_references_resolve(terraform):
    resources, variables, text = terraform
    for var in set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", text)):
        assert var in variables, f"var.{var} is not declared"
    for rtype, name in set(re.findall(r"\b(aws_[a-z0-9_]+)\.([A-Za-z0-9_]+)\.[a-z_]+", text)):
        assert (rtype, name) in resources, f"{rtype}.{name} is not declared"
