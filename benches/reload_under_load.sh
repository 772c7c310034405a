#!/usr/bin/env bash
# Zero-drop reload benchmark: wrk drives traffic through Portcullis to a local nginx while a
# loop rewrites a VirtualService 100 times (alternating the value of a response header), first
# with keep-alive connections, then with `Connection: close` (a new connection per request).
#
#   benches/reload_under_load.sh              # builds the release binary (cargo build --release)
#   PORTCULLIS_BIN=path/to/portcullis benches/reload_under_load.sh
#
# Knobs (environment): DURATION (s, default 30), REWRITES (default 100), THREADS (wrk, 2),
# CONNECTIONS (wrk, 32), GW_THREADS (gateway worker threads, default: one per CPU).
#
# Prints per run: total requests, non-2xx responses, socket errors (connect/read/write/timeout),
# latency p50/p90/p99/max, responses seen per route version, reloads applied (from /reload).
# Exits non-zero if any request failed (non-2xx or socket error) or any reload failed.
# Needs: wrk, nginx, curl, jq, python3 (for free ports).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-30}"
REWRITES="${REWRITES:-100}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"

for tool in wrk nginx curl jq python3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

if [[ -z "${PORTCULLIS_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --bin portcullis >&2)
    PORTCULLIS_BIN="$ROOT/target/release/portcullis"
fi
[[ -x "$PORTCULLIS_BIN" ]] || { echo "not executable: $PORTCULLIS_BIN" >&2; exit 2; }

WORK="$(mktemp -d -t portcullis-reload-bench.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${KEEP_WORKDIR:-}" ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r NGINX_PORT GW_PORT ADMIN_PORT < <(free_ports 3)

# --- backend: nginx answering 200 on loopback -------------------------------------------------
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 200 "ok\n"; }
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)

# --- config ---------------------------------------------------------------------------------
mkdir -p "$WORK/config" "$WORK/certs"
cat >"$WORK/config/gateway.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: $GW_PORT
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: nginx
  namespace: default
spec:
  hosts:
  - nginx.bench.local
  ports:
  - number: $NGINX_PORT
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints:
  - address: 127.0.0.1
EOF

# The VirtualService in one of two versions (a, b), written atomically like an editor does.
write_vs() {
    local version="$1"
    cat >"$WORK/config/.vs.yaml.tmp" <<EOF
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench
  namespace: default
spec:
  hosts:
  - "*"
  gateways:
  - bench
  http:
  - name: to-nginx
    headers:
      response:
        set:
          x-version: "$version"
    route:
    - destination:
        host: nginx.bench.local
        port:
          number: $NGINX_PORT
EOF
    mv -f "$WORK/config/.vs.yaml.tmp" "$WORK/config/vs.yaml"
}
write_vs a

# --- gateway --------------------------------------------------------------------------------
GW_ARGS=(run --config "$WORK/config" --certs "$WORK/certs" --admin "127.0.0.1:$ADMIN_PORT"
    --bind 127.0.0.1)
[[ -n "${GW_THREADS:-}" ]] && GW_ARGS+=(--threads "$GW_THREADS")
# The access log (stdout, one line per request) goes to /dev/null; the reload log to a file.
NO_COLOR=1 RUST_LOG=info "$PORTCULLIS_BIN" "${GW_ARGS[@]}" >/dev/null 2>"$WORK/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")

admin() { curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT$1"; }
for _ in $(seq 1 300); do
    if admin /healthz/ready >/dev/null 2>&1; then break; fi
    kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/gateway.log" >&2; exit 1; }
    sleep 0.1
done
admin /healthz/ready >/dev/null || { echo "gateway not ready" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
for _ in $(seq 1 100); do
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/")" == 200 ]]; then break; fi
    sleep 0.1
done
[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/")" == 200 ]] || {
    echo "gateway does not reach nginx" >&2; cat "$WORK/gateway.log" >&2; exit 1; }

# --- wrk script: count statuses and route versions, print the summary -----------------------
cat >"$WORK/count.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0; va = 0; vb = 0; vnone = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  local v = headers["x-version"] or headers["X-Version"]
  if v == "a" then va = va + 1 elseif v == "b" then vb = vb + 1 else vnone = vnone + 1 end
end
function done(summary, latency, requests)
  local n, a, b, none = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    n = n + t:get("non2xx"); a = a + t:get("va"); b = b + t:get("vb"); none = none + t:get("vnone")
  end
  local e = summary.errors
  io.write(string.format("RESULT total=%d non2xx=%d connect=%d read=%d write=%d timeout=%d status=%d version_a=%d version_b=%d version_none=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f duration_s=%.1f\n",
    summary.requests, n, e.connect, e.read, e.write, e.timeout, e.status, a, b, none,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.duration / 1e6))
end
EOF

reload_field() { admin /reload | jq -r ".$1"; }

FAILED=0
run() {
    local mode="$1"; shift
    local ok0 failed0 gen0
    ok0="$(reload_field reloads_ok)"; failed0="$(reload_field reloads_failed)"
    gen0="$(reload_field generation)"

    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
        -s "$WORK/count.lua" "$@" "http://127.0.0.1:$GW_PORT/" >"$WORK/wrk-$mode.out" 2>&1 &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")

    # Rewrite the VirtualService REWRITES times, spread over the run (leave 2 s at each end).
    local interval
    interval="$(python3 -c "print(max(0.0, ($DURATION - 4) / max($REWRITES, 1)))")"
    sleep 2
    for i in $(seq 1 "$REWRITES"); do
        if (( i % 2 )); then write_vs b; else write_vs a; fi
        sleep "$interval"
    done
    wait "$wrk_pid" || true
    # Let a reload still in its debounce window finish before reading the counters.
    sleep 1

    local ok failed gen line
    ok=$(( $(reload_field reloads_ok) - ok0 ))
    failed=$(( $(reload_field reloads_failed) - failed0 ))
    gen="$(reload_field generation)"
    line="$(grep '^RESULT ' "$WORK/wrk-$mode.out" || true)"
    if [[ -z "$line" ]]; then
        echo "wrk produced no result:" >&2; cat "$WORK/wrk-$mode.out" >&2; FAILED=1; return
    fi
    # shellcheck disable=SC2086
    local $(echo "${line#RESULT }")
    echo "== $mode: ${DURATION}s, $THREADS threads, $CONNECTIONS connections, $REWRITES rewrites"
    printf '  requests        %d (%.0f/s)\n' "$total" "$(python3 -c "print($total / $duration_s)")"
    printf '  non-2xx         %d\n' "$non2xx"
    printf '  socket errors   connect %d, read %d, write %d, timeout %d\n' "$connect" "$read" "$write" "$timeout"
    printf '  latency         p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n' "$p50_ms" "$p90_ms" "$p99_ms" "$max_ms"
    printf '  route versions  a %d, b %d, neither %d\n' "$version_a" "$version_b" "$version_none"
    printf '  reloads         %d applied, %d failed (generation %d -> %d)\n' "$ok" "$failed" "$gen0" "$gen"
    if (( non2xx + connect + read + write + timeout + failed > 0 )); then
        echo "  FAILED: requests or reloads failed" >&2
        sed -n '1,40p' "$WORK/wrk-$mode.out" >&2
        FAILED=1
    fi
    if (( ok == 0 || version_a == 0 || version_b == 0 )); then
        echo "  FAILED: the rewrites were not applied under load" >&2
        FAILED=1
    fi
}

run keep-alive
run connection-close -H 'Connection: close'

echo "== gateway: $(grep -c 'reload ok' "$WORK/gateway.log") reload log lines, $(grep -c 'reload failed' "$WORK/gateway.log" || true) failures"
if grep -E ' (ERROR|WARN) ' "$WORK/gateway.log" | grep -v 'drain' | head -20 | grep -q .; then
    echo "-- warnings/errors in the gateway log:"
    grep -E ' (ERROR|WARN) ' "$WORK/gateway.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -20
fi
exit "$FAILED"
