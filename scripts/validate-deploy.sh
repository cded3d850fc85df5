#!/usr/bin/env bash
# Validate every deployment artifact offline, with the tools the project uses:
#   systemd-analyze verify  systemd/*.service
#   hadolint                Dockerfile
#   kubernetes-validate     k8s/*.yaml (--strict, Kubernetes 1.30 schemas)
#   yamllint                k8s/ packaging/
#   docker stack config     packaging/docker-compose.ha.yml (when the client has it)
#   nginx -t                packaging/nginx/proxilion.conf (names -> 127.0.0.x, temp self-signed cert)
#   haproxy -c -dW          packaging/haproxy/haproxy.cfg (temp self-signed pem)
#   promtool check rules / check config / test rules   packaging/prometheus/
# The field-by-field checks against the HA guide live in tests/deploy/ (pytest).
#
# Usage: scripts/validate-deploy.sh        (exit 1 if any check fails; missing tools are SKIPped,
#                                           or fail when STRICT=1 or CI=true)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
VENV_BIN="$ROOT/.venv/bin"
STRICT=${STRICT:-0}
[[ "${CI:-}" == "true" || "${CI:-}" == "1" ]] && STRICT=1
K8S_VERSION=1.30.0

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failures=0
skips=0

find_tool() {
    if [[ -x "$VENV_BIN/$1" ]]; then echo "$VENV_BIN/$1"; else command -v "$1" || true; fi
}

# check NAME TOOL COMMAND...: run COMMAND, which must exit 0 and print no warning.
check() {
    local name=$1 tool=$2
    shift 2
    if [[ -z "$(find_tool "$tool")" ]]; then
        if [[ "$STRICT" == 1 ]]; then
            echo "FAIL $name ($tool not installed)"; failures=$((failures + 1))
        else
            echo "SKIP $name ($tool not installed)"; skips=$((skips + 1))
        fi
        return
    fi
    local out
    if out=$("$@" 2>&1) && ! grep -qiE '(^|[^a-z])(warn|warning|emerg|unknown key)' <<<"$out"; then
        echo "ok   $name"
    else
        echo "FAIL $name"; printf '     %s\n' "${out//$'\n'/$'\n'     }"; failures=$((failures + 1))
    fi
}

# --- systemd: verify copies whose ExecStart binary exists ---
mkdir -p "$WORK/systemd/bin"
printf '#!/bin/sh\nexit 0\n' >"$WORK/systemd/bin/twistd"
chmod +x "$WORK/systemd/bin/twistd"
for unit in proxilion.service proxilion@.service; do
    sed "s#/opt/proxilion/venv/bin/twistd#$WORK/systemd/bin/twistd#" "systemd/$unit" >"$WORK/systemd/$unit"
done
ln -sf proxilion@.service "$WORK/systemd/proxilion@8788.service"
verify_unit() { (cd "$WORK/systemd" && out=$(systemd-analyze verify "./$1" 2>&1); rc=$?; printf '%s' "$out"; [[ $rc == 0 && -z "$out" ]]); }
check "systemd proxilion.service" systemd-analyze verify_unit proxilion.service
check "systemd proxilion@.service" systemd-analyze verify_unit proxilion@8788.service

# --- Dockerfile ---
check "hadolint Dockerfile" hadolint "$(find_tool hadolint)" --config .hadolint.yaml Dockerfile

# --- Kubernetes ---
for f in k8s/deployment.yaml k8s/ingress.yaml k8s/redis.yaml k8s/postgres.yaml k8s/secret.example.yaml; do
    check "kubernetes-validate $f" kubernetes-validate "$(find_tool kubernetes-validate)" --strict --quiet -k "$K8S_VERSION" "$f"
done
check "yamllint k8s/ packaging/" yamllint "$(find_tool yamllint)" --strict -c tests/deploy/yamllint.yaml k8s packaging

# --- Swarm stack ---
if command -v docker >/dev/null && docker stack config --help >/dev/null 2>&1; then
    check "docker stack config" docker env ADMIN_TOKEN=x POSTGRES_PASSWORD=x docker stack config -c packaging/docker-compose.ha.yml
else
    echo "SKIP docker stack config (no docker client with 'stack config'; tests/deploy checks the structure)"
fi

# --- TLS material for the load balancers ---
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=proxy.example.com \
        -keyout "$WORK/proxy.key" -out "$WORK/proxy.crt" >/dev/null 2>&1
    cat "$WORK/proxy.crt" "$WORK/proxy.key" >"$WORK/proxy.pem"
fi

# --- NGINX: inside a temp nginx.conf, upstream names on loopback ---
mkdir -p "$WORK/nginx/temp"
sed -e "s#/etc/ssl/proxy.crt#$WORK/proxy.crt#" -e "s#/etc/ssl/proxy.key#$WORK/proxy.key#" \
    -e 's#proxilion-\([0-9]*\):8787#127.0.0.\1:8787#' packaging/nginx/proxilion.conf >"$WORK/nginx/proxilion.conf"
cat >"$WORK/nginx/nginx.conf" <<CONF
pid $WORK/nginx/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path $WORK/nginx/temp/body;
    proxy_temp_path $WORK/nginx/temp/proxy;
    fastcgi_temp_path $WORK/nginx/temp/fastcgi;
    uwsgi_temp_path $WORK/nginx/temp/uwsgi;
    scgi_temp_path $WORK/nginx/temp/scgi;
    include $WORK/nginx/proxilion.conf;
}
CONF
nginx_test() { nginx -t -q -e stderr -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"; }
check "nginx -t packaging/nginx/proxilion.conf" nginx nginx_test

# --- HAProxy ---
sed -e "s#/etc/ssl/proxy.pem#$WORK/proxy.pem#" -e "s#/run/haproxy/admin.sock#$WORK/admin.sock#" \
    packaging/haproxy/haproxy.cfg >"$WORK/haproxy.cfg"
check "haproxy -c packaging/haproxy/haproxy.cfg" haproxy haproxy -dW -c -q -f "$WORK/haproxy.cfg"

# --- Prometheus ---
mkdir -p "$WORK/prom"
cp packaging/prometheus/alerts.yml packaging/prometheus/prometheus.yml tests/deploy/alerts_test.yml "$WORK/prom/"
check "promtool check rules alerts.yml" promtool promtool check rules "$WORK/prom/alerts.yml"
check "promtool check config prometheus.yml" promtool promtool check config "$WORK/prom/prometheus.yml"
check "promtool test rules (alert unit tests)" promtool promtool test rules "$WORK/prom/alerts_test.yml"

# --- Grafana ---
check "grafana dashboard is JSON" python3 python3 -m json.tool packaging/grafana/proxilion-dashboard.json

echo
if [[ $failures -gt 0 ]]; then
    echo "validate-deploy: $failures check(s) failed, $skips skipped"
    exit 1
fi
echo "validate-deploy: all checks passed ($skips skipped)"
