#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what is missing, starts real services on
# loopback (PostgreSQL, an S3-compatible server, SMTP servers and an HTTP receiver for
# alerts), runs the whole suite, stops what it started.
# Under CI=true a service that cannot be started fails the run; it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CI=${CI:-false}
WORK=$(mktemp -d /tmp/strongbox-test.XXXXXX)
PIDS=()
STARTED_PG=false

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }
missing_service() {
    if [ "$CI" = "true" ]; then die "$1 (CI=true: a missing service fails the run)"; fi
    printf 'test.sh: warning: %s; its tests will be skipped\n' "$1" >&2
}

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ "$STARTED_PG" = true ]; then pg_ctlcluster 15 main stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # host port what
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

log "checking tools"
need_apt=()
for tool in age:age zstd:zstd jq:jq sqlite3:sqlite3 tar:tar gzip:gzip sha256sum:coreutils \
    script:bsdutils systemd-analyze:systemd man:man-db dpkg-deb:dpkg; do
    command -v "${tool%%:*}" >/dev/null || need_apt+=("${tool#*:}")
done
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need_apt+=(python3-aiosmtpd)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v s3s-fs >/dev/null && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
    # Newer s3s-fs releases need a newer rustc than this machine's.
    log "installing s3s-fs (an S3-compatible server; about 2 minutes, cached in ~/.cargo/bin)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
export PATH="$HOME/.cargo/bin:$PATH"

log "starting PostgreSQL"
if command -v pg_ctlcluster >/dev/null; then
    if ! pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .*online'; then
        pg_ctlcluster 15 main start && STARTED_PG=true || true
    fi
    PG_PORT=$(pg_lsclusters -h 2>/dev/null | awk '$1 == 15 && $2 == "main" { print $3 }')
    if [ -n "$PG_PORT" ] && runuser -u postgres -- psql -p "$PG_PORT" -qAtc "select 1" >/dev/null 2>&1; then
        runuser -u postgres -- psql -p "$PG_PORT" -qc "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'strongbox') THEN
                CREATE ROLE strongbox LOGIN SUPERUSER PASSWORD 'strongbox-test';
            END IF; END \$\$;" >/dev/null
        export STRONGBOX_TEST_PG="postgresql://strongbox:strongbox-test@127.0.0.1:$PG_PORT"
    else
        missing_service "PostgreSQL 15 could not be started"
    fi
else
    missing_service "PostgreSQL is not installed"
fi

log "starting s3s-fs"
if command -v s3s-fs >/dev/null; then
    S3_PORT=$(free_port)
    mkdir -p "$WORK/s3/strongbox-test"
    export AWS_ACCESS_KEY_ID=strongbox-test AWS_SECRET_ACCESS_KEY=strongbox-test-secret
    s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" \
        "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
    PIDS+=($!)
    if wait_for_port 127.0.0.1 "$S3_PORT"; then
        export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
        export STRONGBOX_TEST_S3_BUCKET=strongbox-test
        export STRONGBOX_TEST_S3_ROOT="$WORK/s3"
        export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
    else
        cat "$WORK/s3s.log" >&2
        missing_service "s3s-fs did not start"
    fi
else
    missing_service "s3s-fs is not installed"
fi

log "starting the alert receivers (SMTP, HTTP)"
if /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null && command -v openssl >/dev/null; then
    # A private CA and a server certificate for localhost: the STARTTLS and TLS servers.
    TLS="$WORK/tls"
    mkdir -p "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=strongbox-test-ca \
        -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
        -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$TLS/ext"
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
        -CAcreateserial -days 2 -extfile "$TLS/ext" -out "$TLS/server.pem" 2>/dev/null
    SMTP_PORT=$(free_port); STARTTLS_PORT=$(free_port); TLS_PORT=$(free_port); HTTP_PORT=$(free_port)
    export STRONGBOX_TEST_SMTP_PASSWORD="smtp-$RANDOM$RANDOM"
    /usr/bin/python3 scripts/test-receivers.py --dir "$WORK/received" --smtp-port "$SMTP_PORT" \
        --starttls-port "$STARTTLS_PORT" --tls-port "$TLS_PORT" --http-port "$HTTP_PORT" \
        --cert "$TLS/server.pem" --key "$TLS/server.key" --user strongbox \
        >"$WORK/receivers.log" 2>&1 &
    PIDS+=($!)
    if wait_for_port 127.0.0.1 "$HTTP_PORT" && wait_for_port 127.0.0.1 "$TLS_PORT"; then
        export STRONGBOX_TEST_SMTP="127.0.0.1:$SMTP_PORT"
        export STRONGBOX_TEST_SMTP_STARTTLS="localhost:$STARTTLS_PORT"
        export STRONGBOX_TEST_SMTP_TLS="localhost:$TLS_PORT"
        export STRONGBOX_TEST_SMTP_CA="$TLS/ca.pem" STRONGBOX_TEST_SMTP_USER=strongbox
        export STRONGBOX_TEST_WEBHOOK="http://127.0.0.1:$HTTP_PORT"
        export STRONGBOX_TEST_RECEIVED="$WORK/received"
    else
        cat "$WORK/receivers.log" >&2
        missing_service "the SMTP and HTTP receivers did not start"
    fi
else
    missing_service "python3-aiosmtpd or openssl is not installed"
fi

log "checking format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

log "building"
cargo build --workspace --all-targets --all-features --locked

if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    log "starting the S3 fault proxy (in front of s3s-fs; tests set its faults per prefix)"
    PROXY_PORT=$(free_port)
    "${CARGO_TARGET_DIR:-target}/debug/strongbox-fault-proxy" --listen "127.0.0.1:$PROXY_PORT" \
        --upstream "127.0.0.1:$S3_PORT" >"$WORK/proxy.log" 2>&1 &
    PIDS+=($!)
    if wait_for_port 127.0.0.1 "$PROXY_PORT"; then
        export STRONGBOX_TEST_S3_PROXY="http://127.0.0.1:$PROXY_PORT"
    else
        cat "$WORK/proxy.log" >&2
        missing_service "the S3 fault proxy did not start"
    fi
fi

log "running the test suite"
cargo test --workspace --all-features --locked

if [ -n "${STRONGBOX_TEST_S3_PROXY:-}" ]; then
    log "S3 faults injected by the proxy this run: $(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1] + "/__faults").read().decode())' "$STRONGBOX_TEST_S3_PROXY")"
fi
