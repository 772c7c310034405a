#!/usr/bin/env bash
# Config scale: N VirtualServices (each with its ServiceEntry, one file per service) on one
# Gateway with `*`. Measures `portcullis check`, start-up to ready, RSS, and the time from
# changing one file to the new generation being served.
#
#   benches/config_scale.sh                  # N=10000, builds the release binary
#   N=2000 PORTCULLIS_BIN=target/debug/portcullis benches/config_scale.sh
#
# Knobs: N (default 10000), RELOADS (one-file changes measured, default 5).
# Needs: curl, jq, python3 (free ports, timing).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-10000}"
RELOADS="${RELOADS:-5}"

for tool in curl jq python3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
if [[ -z "${PORTCULLIS_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --bin portcullis >&2)
    PORTCULLIS_BIN="$ROOT/target/release/portcullis"
fi
[[ -x "$PORTCULLIS_BIN" ]] || { echo "not executable: $PORTCULLIS_BIN" >&2; exit 2; }

WORK="$(mktemp -d -t portcullis-scale-bench.XXXXXX)"
GW_PID=""
cleanup() {
    if [[ -n "$GW_PID" ]]; then
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
    if [[ -n "${KEEP_WORKDIR:-}" ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.0f}')" "$1" "$(now)"; }

read -r GW_PORT ADMIN_PORT < <(python3 - <<'EOF'
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])
EOF
)

# --- generate -------------------------------------------------------------------------------
mkdir -p "$WORK/config/services" "$WORK/certs"
cat >"$WORK/config/gateway.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
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
EOF

# One service: a VirtualService for svc-I.example.com (a direct-response health route, then
# everything to its backend) and the ServiceEntry of that backend.
service_yaml() {
    local i="$1" version="$2"
    cat <<EOF
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-$i
  namespace: default
spec:
  hosts:
  - svc-$i.example.com
  gateways:
  - edge
  http:
  - name: health
    match:
    - uri:
        exact: /healthz
    directResponse:
      status: 200
      body:
        string: "svc-$i $version"
  - name: api
    match:
    - uri:
        prefix: /api/
    headers:
      response:
        set:
          x-service: svc-$i
    route:
    - destination:
        host: svc-$i.backend.local
        port:
          number: 8080
    timeout: 5s
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-$i
  namespace: default
spec:
  hosts:
  - svc-$i.backend.local
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints:
  - address: 127.0.0.$(( (i % 250) + 1 ))
EOF
}

gen_start="$(now)"
python3 - "$WORK/config/services" "$N" <<'EOF'
import sys
out, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{out}/svc-{i:05d}.yaml", "w") as f:
        f.write(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-{i}
  namespace: default
spec:
  hosts:
  - svc-{i}.example.com
  gateways:
  - edge
  http:
  - name: health
    match:
    - uri:
        exact: /healthz
    directResponse:
      status: 200
      body:
        string: "svc-{i} v0"
  - name: api
    match:
    - uri:
        prefix: /api/
    headers:
      response:
        set:
          x-service: svc-{i}
    route:
    - destination:
        host: svc-{i}.backend.local
        port:
          number: 8080
    timeout: 5s
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-{i}
  namespace: default
spec:
  hosts:
  - svc-{i}.backend.local
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints:
  - address: 127.0.0.{(i % 250) + 1}
""")
EOF
# Keep the shell template and the generator in step.
diff <(service_yaml 7 v0) "$WORK/config/services/svc-00007.yaml" >/dev/null || {
    echo "generator and service_yaml differ" >&2; exit 1; }
echo "== $N VirtualServices + $N ServiceEntries in $(find "$WORK/config" -name '*.yaml' | wc -l) files,"\
     "$(du -sh "$WORK/config" | cut -f1) (generated in $(ms_since "$gen_start") ms)"

# --- check ------------------------------------------------------------------------------------
check_start="$(now)"
set +e
"$PORTCULLIS_BIN" check --config "$WORK/config" --certs "$WORK/certs" >"$WORK/check.out" 2>&1
check_code=$?
set -e
check_ms="$(ms_since "$check_start")"
echo "check           ${check_ms} ms (exit $check_code): $(tail -n 1 "$WORK/check.out")"
(( check_code == 0 )) || { head -20 "$WORK/check.out" >&2; exit 1; }

# --- start-up ---------------------------------------------------------------------------------
admin() { curl -fsS --max-time 10 "http://127.0.0.1:$ADMIN_PORT$1"; }
start="$(now)"
NO_COLOR=1 RUST_LOG=info "$PORTCULLIS_BIN" run --config "$WORK/config" --certs "$WORK/certs" \
    --admin "127.0.0.1:$ADMIN_PORT" --bind 127.0.0.1 >/dev/null 2>"$WORK/gateway.log" &
GW_PID=$!
until admin /healthz/ready >/dev/null 2>&1; do
    kill -0 "$GW_PID" 2>/dev/null || { echo "gateway exited" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
    sleep 0.02
done
ready_ms="$(ms_since "$start")"
rss() { awk -v k="$1:" '$1 == k { printf "%.1f MiB", $2 / 1024 }' "/proc/$GW_PID/status"; }
echo "start to ready  ${ready_ms} ms ($(grep -o 'loaded .* in [0-9]* ms' "$WORK/gateway.log" | sed 's/.* in //') loading)"
echo "RSS when ready  $(rss VmRSS) (peak $(rss VmHWM))"

probe() { curl -s --max-time 5 -H "Host: svc-$1.example.com" "http://127.0.0.1:$GW_PORT/healthz"; }
[[ "$(probe 42)" == "svc-42 v0" ]] || { echo "svc-42 not served: $(probe 42)" >&2; exit 1; }

# --- one-file reloads -------------------------------------------------------------------------
durations=()
served=()
for r in $(seq 1 "$RELOADS"); do
    i=$(( (r * 7919) % N ))
    gen0="$(admin /reload | jq -r .generation)"
    file="$WORK/config/services/$(printf 'svc-%05d.yaml' "$i")"
    t0="$(now)"
    service_yaml "$i" "v$r" >"$file.tmp" && mv "$file.tmp" "$file"
    until [[ "$(admin /reload | jq -r .generation)" != "$gen0" ]]; do sleep 0.01; done
    gen_ms="$(ms_since "$t0")"
    until [[ "$(probe "$i")" == "svc-$i v$r" ]]; do sleep 0.01; done
    served_ms="$(ms_since "$t0")"
    status="$(admin /reload)"
    [[ "$(jq -r .last_result <<<"$status")" == ok ]] || { echo "reload failed: $status" >&2; exit 1; }
    durations+=("$(jq -r .last_duration_ms <<<"$status")")
    served+=("$served_ms")
    echo "reload $r         file written -> generation $(jq -r .generation <<<"$status") in ${gen_ms} ms," \
         "served in ${served_ms} ms (rebuild $(jq -r .last_duration_ms <<<"$status") ms after the 200 ms debounce), RSS $(rss VmRSS)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "reload median   change to served $(median "${served[@]}") ms, rebuild $(median "${durations[@]}") ms"
echo "RSS after       $(rss VmRSS) (peak $(rss VmHWM))"
grep 'reload ok' "$WORK/gateway.log" | tail -n 1 | sed 's/^/last log line   /'
