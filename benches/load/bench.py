#!/usr/bin/env python3
"""Side-by-side load run: the Pingora floor, Portcullis, nginx and Envoy as reverse proxies to one
nginx origin, under the same load, in one invocation. Started by benches/load.sh (which builds
the floor and Portcullis first); see docs/benchmarks.md for the command and the figures.

Rig: every proxy runs one worker; the proxy and the origin share core 0, the load generator runs
alone on core 1. CPU per request is the proxy process tree's on-CPU time (/proc/PID/task/*/
schedstat, nanoseconds) over the requests it served. Runs of one scenario are interleaved across
the proxies (run 1 of each, then run 2 of each, ...) so drift hits them alike; the report shows
medians. Everything listens on 127.0.0.1 on free ports; every process started here is stopped at
exit (also on Ctrl-C, on error and when MAX_MINUTES runs out).

Environment: DURATION (s per run, 10), RUNS (3), CONNS (50), PROXIES ("floor portcullis nginx
envoy"), SCENARIOS ("http tls newconn h2 egress syscalls memory scaling"; also "profile": perf record of
the floor and Portcullis, and "tlsnew"), PROFILE_TOP (40), IDLE_CONNS (5000),
EGRESS_CALLS (2000), SYSCALL_SECONDS (3), MAX_MINUTES (60), RESULTS (a JSON file to write),
PORTCULLIS, FLOOR, ENVOY (binaries; load.sh sets them), KEEP=1 (keep the work directory).
A Portcullis entry of PROXIES may name one feature to turn on (`portcullis+jwt`: see variants.py
for ipallow, jwt, trace0, trace100), to measure what it costs beside `portcullis`.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from variants import FEATURES, Variants  # noqa: E402  (Portcullis with one feature on)

# Extra request headers per proxy process (a feature's token), added by wrk() and h2load().
HEADERS = {}
DURATION = int(os.environ.get("DURATION", "10"))
RUNS = int(os.environ.get("RUNS", "3"))
CONNS = int(os.environ.get("CONNS", "50"))
PROXIES = os.environ.get("PROXIES", "floor portcullis nginx envoy").split()
SCENARIOS = os.environ.get("SCENARIOS", "http tls newconn h2 egress syscalls memory scaling").split()
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "5000"))
EGRESS_CALLS = int(os.environ.get("EGRESS_CALLS", "2000"))
SYSCALL_SECONDS = int(os.environ.get("SYSCALL_SECONDS", "3"))
MAX_MINUTES = float(os.environ.get("MAX_MINUTES", "60"))
BODY = "x" * 100
PROXY_CPU, LOAD_CPU = "0", "1"

procs = []  # every process started here (each in its own session: killed by process group)
work = tempfile.mkdtemp(prefix="portcullis-load.")
results = {"scenarios": {}}


def log(msg):
    print(msg, flush=True)


def cleanup(*_):
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 3
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    procs.clear()
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)


def on_signal(signum, _frame):
    raise SystemExit(f"stopped by signal {signum}")


def start(cmd, name, cpus=PROXY_CPU, quiet_stdout=False):
    out = open(os.path.join(work, f"{name}.log"), "ab")
    stdout = subprocess.DEVNULL if quiet_stdout else out
    p = subprocess.Popen(["taskset", "-c", cpus] + cmd, stdout=stdout, stderr=out,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    procs.remove(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, what, tls=False, headers=()):
    for _ in range(200):
        r = subprocess.run(["curl", "-sk", *headers, "-o", "/dev/null", "-w", "%{http_code}",
                            f"{'https' if tls else 'http'}://127.0.0.1:{port}/"],
                           capture_output=True, text=True)
        if r.stdout == "200":
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer 200 on port {port} (log: {work})")


# ---------------------------------------------------------------- process accounting

def tree(pid):
    """pid and its descendants (nginx: master and worker)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ns(pid):
    total = 0
    for p in tree(pid):
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


# ---------------------------------------------------------------- the rig

def certificates():
    def sh(*a):
        subprocess.run(a, cwd=work, check=True, capture_output=True)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-days", "2", "-subj", "/CN=bench-ca", "-keyout", "ca.key", "-out", "ca.crt")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-subj", "/CN=bench.local", "-keyout", "tls.key", "-out", "tls.csr")
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:bench.local,DNS:origin.bench.local,IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
       "-CAcreateserial", "-days", "2", "-out", "tls.crt", "-extfile", "san.ext")
    os.makedirs(os.path.join(work, "certs/bench"))
    for f in ("tls.crt", "tls.key"):
        shutil.copy(os.path.join(work, f), os.path.join(work, "certs/bench", f))


class Rig:
    def __init__(self):
        self.origin, self.origin_tls = free_port(), free_port()
        self.variants = Variants(work)
        self.http = {p: free_port() for p in PROXIES}
        self.https = {p: free_port() for p in PROXIES}
        self.egress = {p: free_port() for p in PROXIES if not p.startswith("floor")}
        self.pid = {}
        self.proc = {}
        self.threads = {}
        self.envoy = os.environ.get("ENVOY", "envoy")

    def write(self, name, text):
        path = os.path.join(work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_origin(self):
        conf = self.write("origin.conf", f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log {work}/origin.err;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  log_format conn '$connection $ssl_session_reused';
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{self.origin} backlog=4096; location / {{ return 200 '{BODY}'; }} }}
  server {{ listen 127.0.0.1:{self.origin_tls} ssl; ssl_certificate {work}/tls.crt; ssl_certificate_key {work}/tls.key;
           access_log {work}/origin-tls.log conn; location / {{ return 200 '{BODY}'; }} }}
}}""")
        start(["nginx", "-c", conf], "origin")
        wait_http(self.origin, "origin nginx")

    def nginx_conf(self, threads):
        return self.write("nginx.conf", f"""
worker_processes {threads}; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000; keepalive_timeout 600s;
  upstream origin {{ server 127.0.0.1:{self.origin}; keepalive 128; }}
  upstream origin_tls {{ server 127.0.0.1:{self.origin_tls}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{self.http['nginx']} backlog=4096;
    listen 127.0.0.1:{self.https['nginx']} ssl http2 backlog=4096;
    ssl_certificate {work}/tls.crt; ssl_certificate_key {work}/tls.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  server {{
    listen 127.0.0.1:{self.egress['nginx']};
    location / {{ proxy_pass https://origin_tls; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_ssl_server_name on; proxy_ssl_name origin.bench.local; proxy_ssl_session_reuse on;
                 proxy_ssl_verify on; proxy_ssl_trusted_certificate {work}/ca.crt; }}
  }}
}}""")

    def portcullis_config(self, name):
        sub = "gateways-" + name.replace(":", "-").replace("+", "-")
        os.makedirs(os.path.join(work, sub), exist_ok=True)
        feature = name.split(":")[0].partition("+")[2]
        if feature:
            self.write(f"{sub}/feature.yaml", self.variants.config(feature))
        self.write(f"{sub}/bench.yaml", f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {self.http[name]}, name: http, protocol: HTTP}}
    hosts: ["*"]
  - port: {{number: {self.https[name]}, name: https, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: SIMPLE, credentialName: bench}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench-egress}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {self.egress[name]}, name: egress, protocol: HTTP}}
    hosts: [origin.bench.local]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench}}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route: [{{destination: {{host: origin.local, port: {{number: {self.origin}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: egress}}
spec:
  hosts: [origin.bench.local]
  gateways: [bench-egress]
  http:
  - route: [{{destination: {{host: origin.bench.local, port: {{number: {self.origin_tls}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: origin}}
spec:
  hosts: [origin.local]
  ports: [{{number: {self.origin}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: origin-tls}}
spec:
  hosts: [origin.bench.local]
  ports: [{{number: {self.origin_tls}, name: https, protocol: HTTPS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: origin-tls}}
spec:
  host: origin.bench.local
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: {work}/ca.crt}}
""")
        return os.path.join(work, sub)

    def envoy_conf(self):
        def listener(kind, port, cluster, tls):
            t = ""
            if tls:
                t = f"""
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates: [{{certificate_chain: {{filename: {work}/tls.crt}}, private_key: {{filename: {work}/tls.key}}}}]"""
            return f"""
  - name: {kind}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {kind}
          codec_type: AUTO
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: {cluster}}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]{t}"""
        return self.write("envoy.yaml", f"""static_resources:
  listeners:{listener('http', self.http['envoy'], 'origin', False)}{listener('https', self.https['envoy'], 'origin', True)}{listener('egress', self.egress['envoy'], 'origin_tls', False)}
  clusters:
  - name: origin
    type: STATIC
    load_assignment: {{cluster_name: origin, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {self.origin}}}}}}}}}]}}]}}
  - name: origin_tls
    type: STATIC
    load_assignment: {{cluster_name: origin_tls, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {self.origin_tls}}}}}}}}}]}}]}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: origin.bench.local
        common_tls_context: {{validation_context: {{trusted_ca: {{filename: {work}/ca.crt}}}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {free_port()}}}}}}}
""")

    def start_proxy(self, name, threads=1, cpus=PROXY_CPU):
        kind, _, label = name.partition(":")
        kind, _, feature = kind.partition("+")
        if feature and (kind != "portcullis" or feature not in FEATURES):
            raise SystemExit(f"{name}: features ({', '.join(FEATURES)}) are for Portcullis only")
        binary = os.environ.get(f"BIN_{label.upper()}") if label else None
        if label and kind not in ("floor", "portcullis"):
            raise SystemExit(f"{name}: only the floor and Portcullis take another build")
        if label and not binary:
            raise SystemExit(f"{name}: set BIN_{label.upper()} to the binary to run")
        if kind == "nginx":
            cmd = ["nginx", "-c", self.nginx_conf(threads)]
        elif kind == "floor":
            cmd = [binary or os.environ.get("FLOOR", "pingora-floor"), "--http", f"127.0.0.1:{self.http[name]}",
                   "--https", f"127.0.0.1:{self.https[name]}", "--cert", f"{work}/tls.crt",
                   "--key", f"{work}/tls.key", "--upstream", f"127.0.0.1:{self.origin}",
                   "--threads", str(threads)]
        elif kind == "portcullis":
            gateways = self.portcullis_config(name)
            # Access log on as shipped (to stdout, discarded), metrics and request ids on.
            cmd = [binary or os.environ.get("PORTCULLIS", "portcullis"), "run", "--config", gateways,
                   "--certs", f"{work}/certs", "--bind", "127.0.0.1", "--watch", "false",
                   "--threads", str(threads), "--admin", f"127.0.0.1:{free_port()}",
                   "--status-addr", f"127.0.0.1:{free_port()}",
                   "--prometheus-addr", f"127.0.0.1:{free_port()}",
                   "--merged-prometheus-addr", f"127.0.0.1:{free_port()}"]
            mesh = self.variants.mesh(feature, free_port) if feature else None
            if mesh:
                cmd += ["--mesh", mesh]
        elif kind == "envoy":
            cmd = [self.envoy, "-c", self.envoy_conf(), "--concurrency", str(threads), "-l", "error",
                   "--disable-hot-restart"]
        else:
            raise SystemExit(f"unknown proxy {name}")
        # Portcullis writes its access log to stdout: formatted and written, then discarded.
        p = start(cmd, name.replace(":", "-"), cpus, quiet_stdout=kind == "portcullis")
        self.proc[name], self.pid[name], self.threads[name] = p, p.pid, threads
        HEADERS[p.pid] = [a for h in self.variants.headers(feature) for a in ("-H", h)] if feature else []
        wait_http(self.http[name], name, headers=HEADERS[p.pid])
        wait_http(self.https[name], name, tls=True, headers=HEADERS[p.pid])

    def restart_proxy(self, name, threads, cpus=PROXY_CPU):
        stop(self.proc[name])
        time.sleep(0.3)
        self.start_proxy(name, threads, cpus)


# ---------------------------------------------------------------- load generators

def ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(pid, url, duration, extra=()):
    before = cpu_ns(pid)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNS}", f"-d{duration}s",
                          "--latency", *HEADERS.get(pid, []), *extra, url], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    cpu = cpu_ns(pid) - before
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"rps": reqs / duration, "reqs": reqs, "cpu_us": cpu / 1000 / max(reqs, 1),
            "p50": ms(lat.get("50", "")), "p99": ms(lat.get("99", "")), "errors": errors}


def h2load(pid, url, duration):
    logf = os.path.join(work, "h2load.tsv")
    before = cpu_ns(pid)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "h2load", f"-c{CONNS}", "-m10", f"-D{duration}",
                          f"--log-file={logf}", *HEADERS.get(pid, []), url], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    cpu = cpu_ns(pid) - before
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    done, ok = (int(m.group(3)), int(m.group(4))) if m else (0, 0)
    times, bad = [], 0
    with open(logf) as f:
        for line in f:
            cols = line.split()
            if len(cols) >= 3:
                times.append(int(cols[2]) / 1000)
                bad += cols[1] != "200"
    os.remove(logf)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(len(times) * q))] if times else None  # noqa: E731
    return {"rps": done / duration, "reqs": done, "cpu_us": cpu / 1000 / max(done, 1),
            "p50": pick(0.5), "p99": pick(0.99), "errors": (done - ok) + bad}


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def report(title, table, extra_cols=()):
    log(f"\n## {title}")
    log(f"{'proxy':<17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu µs/req':>12}{'vs floor':>10}"
        f"{'vs envoy':>10}{'errors':>8}")
    floor, envoy = table.get("floor", {}).get("cpu_us"), table.get("envoy", {}).get("cpu_us")
    for p, r in table.items():
        log(f"{p:<17}{fmt(r['rps'], 0):>9}{fmt(r['p50'], 2):>9}{fmt(r['p99'], 2):>9}"
            f"{fmt(r['cpu_us']):>12}{fmt(ratio(r['cpu_us'], floor), 2):>10}"
            f"{fmt(ratio(r['cpu_us'], envoy), 2):>10}{r['errors']:>8}")


def throughput(rig, key, title, run_one):
    runs = {p: [] for p in PROXIES}
    for i in range(RUNS):
        for p in PROXIES:
            runs[p].append(run_one(p))
    table = {p: {k: median(rs, k) for k in ("rps", "p50", "p99", "cpu_us")} |
             {"errors": sum(r["errors"] for r in rs), "runs": rs} for p, rs in runs.items()}
    results["scenarios"][key] = table
    report(f"{title}, median of {RUNS} × {DURATION} s", table)


# ---------------------------------------------------------------- scenarios

def scenario_http(rig):
    throughput(rig, "http", f"HTTP/1.1 keep-alive (wrk -t1 -c{CONNS})",
               lambda p: wrk(rig.pid[p], f"http://127.0.0.1:{rig.http[p]}/", DURATION))


def scenario_tls(rig):
    throughput(rig, "tls", f"HTTPS keep-alive, TLS 1.3 (wrk -t1 -c{CONNS})",
               lambda p: wrk(rig.pid[p], f"https://127.0.0.1:{rig.https[p]}/", DURATION))


def scenario_newconn(rig):
    throughput(rig, "newconn", f"HTTP/1.1, new TCP connection per request (wrk -c{CONNS}, Connection: close)",
               lambda p: wrk(rig.pid[p], f"http://127.0.0.1:{rig.http[p]}/", DURATION,
                             ("-H", "Connection: close")))


def scenario_tlsnew(rig):
    throughput(rig, "tlsnew", "HTTPS, new TLS connection per request (full handshake)",
               lambda p: wrk(rig.pid[p], f"https://127.0.0.1:{rig.https[p]}/", DURATION,
                             ("-H", "Connection: close")))


def scenario_h2(rig):
    throughput(rig, "h2", f"HTTP/2 over TLS (h2load -c{CONNS} -m10)",
               lambda p: h2load(rig.pid[p], f"https://127.0.0.1:{rig.https[p]}/", DURATION))


def handshakes():
    time.sleep(0.5)  # nginx logs a request when it completes
    conns = {}
    with open(os.path.join(work, "origin-tls.log")) as f:
        for line in f:
            c, reused = line.split()
            conns[c] = reused
    return len(conns), sum(1 for r in conns.values() if r == ".")


def scenario_egress(rig):
    client = os.path.join(HERE, "egress_client.py")
    proxies = [p for p in PROXIES if not p.startswith("floor")]  # the floor has no TLS origination
    runs = {p: [] for p in proxies}
    logf = os.path.join(work, "origin-tls.log")
    for _ in range(RUNS):
        for p in proxies:
            open(logf, "w").close()  # nginx appends: truncated in place
            before = cpu_ns(rig.pid[p])
            out = subprocess.run(["taskset", "-c", LOAD_CPU, sys.executable, client, "proxy",
                                  f"127.0.0.1:{rig.egress[p]}", "origin.bench.local", str(EGRESS_CALLS)],
                                 capture_output=True, text=True, timeout=600).stdout
            cpu = cpu_ns(rig.pid[p]) - before
            m = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms, failures (\d+)", out)
            conns, full = handshakes()
            runs[p].append({"p50": float(m.group(1)), "p99": float(m.group(2)),
                            "errors": int(m.group(3)), "cpu_us": cpu / 1000 / EGRESS_CALLS,
                            "handshakes": conns, "full_handshakes": full})
    table = {p: {k: median(rs, k) for k in ("p50", "p99", "cpu_us", "handshakes")} |
             {"errors": sum(r["errors"] for r in rs), "runs": rs} for p, rs in runs.items()}
    results["scenarios"]["egress"] = table
    log(f"\n## Egress: {EGRESS_CALLS} sequential calls, each on a new plain client connection; the proxy "
        f"originates TLS on a pooled connection (median of {RUNS})")
    log(f"{'proxy':<17}{'p50 ms':>9}{'p99 ms':>9}{'cpu µs/call':>13}{'vs nginx':>10}{'p50 vs nginx':>14}"
        f"{'origin TLS handshakes/call':>28}{'errors':>8}")
    ng = table.get("nginx", {})
    for p, r in table.items():
        log(f"{p:<17}{fmt(r['p50'], 3):>9}{fmt(r['p99'], 3):>9}{fmt(r['cpu_us']):>13}"
            f"{fmt(ratio(r['cpu_us'], ng.get('cpu_us')), 2):>10}{fmt(ratio(r['p50'], ng.get('p50')), 2):>14}"
            f"{fmt(r['handshakes'] / EGRESS_CALLS * 100, 2) + ' %':>28}{r['errors']:>8}")


def perf_works():
    r = subprocess.run(["perf", "stat", "-e", "syscalls:sys_enter_getpid", "-x,", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "sys_enter_getpid" in r.stderr


def count_syscalls(pid, load):
    """Syscalls of the proxy's threads while `load()` runs: perf's syscall tracepoints if they work
    here, else strace -c -f. Returns ({name: count}, requests served)."""
    pids = ",".join(str(p) for p in tree(pid))
    out = os.path.join(work, "syscalls.txt")
    if perf_works():
        cmd = ["perf", "stat", "-e", "syscalls:sys_enter_*", "-x,", "-o", out, "-p", pids]
    else:
        cmd = ["strace", "-c", "-f", "-o", out] + sum((["-p", p] for p in pids.split(",")), [])
    tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    procs.append(tracer)
    time.sleep(1.0)
    reqs = load()
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    procs.remove(tracer)
    counts = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"^(\d+),.*syscalls:sys_enter_(\w+)", line)  # perf
            if m and int(m.group(1)):
                counts[m.group(2)] = int(m.group(1))
            m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)  # strace
            if m:
                counts[m.group(2)] = int(m.group(1))
    return counts, reqs


def scenario_syscalls(rig):
    kinds = {
        "http": ("HTTP/1.1 keep-alive", lambda p: wrk(rig.pid[p], f"http://127.0.0.1:{rig.http[p]}/",
                                                       SYSCALL_SECONDS)["reqs"]),
        "tls": ("HTTPS keep-alive", lambda p: wrk(rig.pid[p], f"https://127.0.0.1:{rig.https[p]}/",
                                                   SYSCALL_SECONDS)["reqs"]),
        "newconn": ("new TCP connection per request",
                    lambda p: wrk(rig.pid[p], f"http://127.0.0.1:{rig.http[p]}/", SYSCALL_SECONDS,
                                  ("-H", "Connection: close"))["reqs"]),
        "egress": ("egress, new client connection per call", lambda p: egress_calls(rig, p, 500)),
    }
    out = {}
    for key, (title, load) in kinds.items():
        log(f"\n## Syscalls per request: {title} (the proxy's threads, {SYSCALL_SECONDS} s run)")
        out[key] = {}
        for p in PROXIES:
            if key == "egress" and p.startswith("floor"):
                continue
            counts, reqs = count_syscalls(rig.pid[p], lambda: load(p))
            per = {k: v / max(reqs, 1) for k, v in counts.items()}
            out[key][p] = {"total": sum(per.values()), "per_request": per, "requests": reqs}
            top = sorted(((v, k) for k, v in per.items() if v >= 0.05), reverse=True)
            log(f"{p:<17}{sum(per.values()):6.2f} total: " + ", ".join(f"{k} {v:.2f}" for v, k in top))
    results["scenarios"]["syscalls"] = out


def egress_calls(rig, p, n):
    subprocess.run(["taskset", "-c", LOAD_CPU, sys.executable, os.path.join(HERE, "egress_client.py"),
                    "proxy", f"127.0.0.1:{rig.egress[p]}", "origin.bench.local", str(n)],
                   capture_output=True, timeout=300)
    return n


def scenario_memory(rig):
    client = os.path.join(HERE, "idle_conns.py")
    out = {}
    log(f"\n## Memory: RSS per idle keep-alive connection ({IDLE_CONNS:,} connections, one request each, then idle)")
    log(f"{'proxy':<17}{'HTTP/1.1 KiB':>14}{'HTTP/2 (TLS) KiB':>18}{'RSS before MiB':>16}")
    for p in PROXIES:
        row = {}
        for proto, url in (("h1", f"http://127.0.0.1:{rig.http[p]}/"),
                           ("h2", f"https://127.0.0.1:{rig.https[p]}/")):
            before = rss_kib(rig.pid[p])
            c = subprocess.Popen(["taskset", "-c", LOAD_CPU, sys.executable, client, proto, url, str(IDLE_CONNS)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
            procs.append(c)
            line = c.stdout.readline().strip()
            time.sleep(1.0)
            after = rss_kib(rig.pid[p])
            c.stdin.close()
            c.wait(timeout=60)
            procs.remove(c)
            opened = int(line.split()[1]) if line.startswith("open") else 0
            row[proto] = (after - before) / max(opened, 1)
            row[proto + "_opened"] = opened
            row["rss_before_kib"] = row.get("rss_before_kib", before)
            if opened < IDLE_CONNS:
                log(f"  {p} {proto}: only {opened} of {IDLE_CONNS} connections served ({line})")
            time.sleep(2.0)  # closed connections go away
        out[p] = row
        log(f"{p:<17}{fmt(row['h1'], 2):>14}{fmt(row['h2'], 2):>18}{fmt(row['rss_before_kib'] / 1024, 1):>16}")
    results["scenarios"]["memory"] = out


def scenario_scaling(rig):
    names = [p for p in PROXIES if p.split(":")[0] in ("floor", "portcullis")]
    out = {}
    log(f"\n## Scaling: HTTP/1.1 keep-alive with 1 and 2 workers (proxy and origin on core {PROXY_CPU}, "
        f"wrk alone on core {LOAD_CPU}), median of {RUNS}")
    log(f"{'proxy':<17}{'workers':>8}{'req/s':>9}{'p99 ms':>9}{'cpu µs/req':>12}")
    for threads in (1, 2):
        for p in names:
            if rig.threads[p] != threads:
                rig.restart_proxy(p, threads)
        runs = {p: [] for p in names}
        for _ in range(RUNS):
            for p in names:
                runs[p].append(wrk(rig.pid[p], f"http://127.0.0.1:{rig.http[p]}/", DURATION))
        for p in names:
            row = {k: median(runs[p], k) for k in ("rps", "p99", "cpu_us")}
            out.setdefault(p, {})[threads] = row
            log(f"{p:<17}{threads:>8}{fmt(row['rps'], 0):>9}{fmt(row['p99'], 2):>9}{fmt(row['cpu_us']):>12}")
    for p in names:
        rig.restart_proxy(p, 1)
    results["scenarios"]["scaling"] = out


CRATE = re.compile(r"(?:^|[<\s&(,*])([A-Za-z_][A-Za-z0-9_]*)::")  # a path's first segment


def where(symbol, dso):
    """The crate (or library) a sampled symbol belongs to, for the grouped profile: the first crate
    named in it other than core/alloc/std (`drop_in_place<pingora_core::…>` is pingora_core's)."""
    if dso.startswith("[kernel"):
        return "kernel"
    named = CRATE.findall(symbol)
    crates = [c for c in named if c not in ("core", "alloc", "std", "impl")]
    if crates or named:
        return (crates or named)[0]
    if symbol.startswith(("mi_", "_mi_")):
        return "mimalloc"
    return dso


def scenario_profile(rig):
    """perf record (cpu-clock samples) of each Portcullis build under HTTP/1.1 keep-alive load: the
    ranked symbols and crates where its per-request CPU goes (symbol names need a binary with
    symbols; line tables make them precise: CARGO_PROFILE_RELEASE_DEBUG=line-tables-only)."""
    if shutil.which("perf") is None:
        log("\n## Profile: perf is missing (linux-perf); skipped")
        return
    top = int(os.environ.get("PROFILE_TOP", "40"))
    out = {}
    for p in [p for p in PROXIES if p.split(":")[0] in ("portcullis", "floor")]:
        data = os.path.join(work, f"perf-{p.replace(':', '-')}.data")
        rec = subprocess.Popen(["perf", "record", "-F", "2999", "-o", data, "-p", str(rig.pid[p])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(rec)
        time.sleep(1.0)
        r = wrk(rig.pid[p], f"http://127.0.0.1:{rig.http[p]}/", DURATION)
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=120)
        procs.remove(rec)
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-q",
                              "--sort", "dso,sym", "--percent-limit", "0.01"],
                             capture_output=True, text=True, timeout=600).stdout
        rows = []
        for line in rep.splitlines():
            m = re.match(r"^\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
        groups = {}
        for pct, dso, sym in rows:
            g = where(sym, dso)
            groups[g] = groups.get(g, 0.0) + pct
        cpu = r["cpu_us"]
        log(f"\n## Profile: {p} under HTTP/1.1 keep-alive ({r['rps']:,.0f} req/s, {cpu:.1f} µs CPU/request; "
            f"perf record -F 2999 over {DURATION} s); µs/request = share × CPU/request")
        log("by crate or library:")
        for g, pct in sorted(groups.items(), key=lambda kv: -kv[1])[:20]:
            log(f"  {pct:6.2f} %  {pct / 100 * cpu:6.2f} µs  {g}")
        log(f"top {top} symbols:")
        for pct, dso, sym in rows[:top]:
            log(f"  {pct:6.2f} %  {pct / 100 * cpu:6.2f} µs  {sym[:150]}  [{dso}]")
        out[p] = {"cpu_us": cpu, "rps": r["rps"], "groups": groups, "symbols": rows[:200]}
    results["scenarios"]["profile"] = out


def verdict():
    """The issue's 'What must be true', as measured in this run."""
    s = results["scenarios"]
    lines = []

    def check(ok, text):
        lines.append(f"[{'ok' if ok else 'NO'}] {text}")

    for key, name in (("http", "HTTP/1.1 keep-alive"), ("tls", "HTTPS keep-alive"),
                      ("newconn", "new connection per request"), ("h2", "HTTP/2")):
        t = s.get(key, {})
        pc, fl, en = t.get("portcullis"), t.get("floor"), t.get("envoy")
        if pc and fl:
            r = pc["cpu_us"] / fl["cpu_us"]
            check(r <= 1.05, f"{name}: CPU/request {r:.2f}× the floor (≤ 1.05)")
        if pc and en:
            r = pc["cpu_us"] / en["cpu_us"]
            check(r <= 0.6, f"{name}: CPU/request {r:.2f}× Envoy (≤ 0.6)")
            check(pc["p99"] is not None and en["p99"] is not None and pc["p99"] <= en["p99"],
                  f"{name}: p99 {fmt(pc['p99'], 2)} ms vs Envoy {fmt(en['p99'], 2)} ms")
        if pc:
            check(pc["errors"] == 0, f"{name}: {pc['errors']} errors")
    sc = s.get("syscalls", {}).get("http", {})
    if "portcullis" in sc and "floor" in sc:
        a, b = sc["portcullis"]["total"], sc["floor"]["total"]
        check(a <= b, f"syscalls per keep-alive request {a:.2f} vs the floor's {b:.2f}")
    eg = s.get("egress", {})
    if "portcullis" in eg and "nginx" in eg:
        pc, ng = eg["portcullis"], eg["nginx"]
        check(pc["p50"] <= 1.3 * ng["p50"], f"egress p50 {pc['p50'] / ng['p50']:.2f}× nginx (≤ 1.3)")
        check(pc["cpu_us"] <= 2 * ng["cpu_us"], f"egress CPU/call {pc['cpu_us'] / ng['cpu_us']:.2f}× nginx (≤ 2)")
        check(pc["handshakes"] <= 0.01 * EGRESS_CALLS,
              f"egress origin TLS handshakes {pc['handshakes'] / EGRESS_CALLS * 100:.2f} % of calls (≤ 1 %)")
    mem = s.get("memory", {}).get("portcullis")
    if mem:
        check(mem["h1"] <= 4.0, f"RSS per idle HTTP/1.1 keep-alive connection {mem['h1']:.2f} KiB (≤ 4); "
                                f"HTTP/2: {mem['h2']:.2f} KiB")
    if lines:
        log("\n## What must be true (issue 14), this run")
        for line in lines:
            log(line)


def main():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    signal.alarm(int(MAX_MINUTES * 60))
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        pass
    try:
        certificates()
        rig = Rig()
        rig.start_origin()
        for p in PROXIES:
            rig.start_proxy(p)
        log(f"# load run {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {os.cpu_count()} cores, "
            f"{DURATION} s × {RUNS} runs, {CONNS} connections; proxy+origin on core {PROXY_CPU}, "
            f"load generator on core {LOAD_CPU}; one worker per proxy")
        for s in SCENARIOS:
            globals()[f"scenario_{s}"](rig)
        verdict()
        if os.environ.get("RESULTS"):
            with open(os.environ["RESULTS"], "w") as f:
                json.dump(results, f, indent=1)
    finally:
        signal.alarm(0)
        cleanup()


if __name__ == "__main__":
    main()
