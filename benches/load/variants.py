"""Portcullis with one feature on, to measure what the feature costs per request beside the
same build without it (PROXIES="portcullis portcullis+ipallow portcullis+jwt ..."):

  ipallow    an AuthorizationPolicy ALLOW on ipBlocks (the loopback range): Istio's RBAC filter
  jwt        a RequestAuthentication (RS256, inline JWKS) and an AuthorizationPolicy that
             requires a principal; every request carries a valid token (verified each time)
  trace0     tracing on (OpenTelemetry over OTLP/HTTP), sampling 0 %: context parsed, no span
  trace100   the same at 100 %: every request makes spans that are exported (to a local sink
             that answers 200 and discards them, on the load generator's core)

Tokens and keys are made here with openssl; nothing is fetched.
"""

import base64
import http.server
import json
import os
import subprocess
import threading
import time

FEATURES = ("ipallow", "jwt", "trace0", "trace100")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Variants:
    def __init__(self, work):
        self.work = work
        self._token = None
        self._jwks = None
        self._sink = None
        self.exports = 0  # OTLP export requests the sink answered

    # ------------------------------------------------------------------ JWT
    def _keys(self):
        if self._jwks:
            return
        key = os.path.join(self.work, "jwt.key")
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True,
                                 capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        n = b64url(bytes.fromhex(modulus))
        self._jwks = json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "kid": "bench", "use": "sig",
                                           "n": n, "e": "AQAB"}]})
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}).encode())
        now = int(time.time())
        claims = {"iss": "https://bench.local", "sub": "load", "aud": "bench",
                  "iat": now, "exp": now + 24 * 3600}
        payload = b64url(json.dumps(claims).encode())
        signed = f"{header}.{payload}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signed, check=True,
                             capture_output=True).stdout
        self._token = f"{header}.{payload}.{b64url(sig)}"

    def headers(self, feature):
        """Extra request headers for the load generator."""
        if feature == "jwt":
            self._keys()
            return [f"Authorization: Bearer {self._token}"]
        return []

    # ------------------------------------------------------------------ config
    def config(self, feature):
        """Extra YAML documents for the gateway's config directory."""
        if feature == "ipallow":
            return """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bench-ip, namespace: istio-system}
spec:
  action: ALLOW
  rules: [{from: [{source: {ipBlocks: ["127.0.0.0/8"]}}]}]
"""
        if feature == "jwt":
            self._keys()
            return f"""apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: bench-jwt, namespace: istio-system}}
spec:
  jwtRules:
  - issuer: https://bench.local
    audiences: [bench]
    jwks: '{self._jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: bench-principal, namespace: istio-system}}
spec:
  action: ALLOW
  rules: [{{from: [{{source: {{requestPrincipals: ["*"]}}}}]}}]
"""
        return ""

    def mesh(self, feature, free_port):
        """A mesh file for the feature (`--mesh`), or None."""
        if not feature.startswith("trace"):
            return None
        sampling = feature[len("trace"):]
        port = self._start_sink(free_port)
        path = os.path.join(self.work, f"mesh-{feature}.yaml")
        with open(path, "w") as f:
            f.write(f"""accessLogFile: /dev/stdout
enableTracing: true
defaultConfig:
  tracing: {{sampling: {sampling}}}
defaultProviders: {{tracing: [otel]}}
extensionProviders:
- name: otel
  opentelemetry:
    service: 127.0.0.1
    port: {port}
    http: {{path: /v1/traces, timeout: 5s}}
""")
        return path

    def _start_sink(self, free_port):
        if self._sink:
            return self._sink
        port = free_port()
        variants = self

        class Sink(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                variants.exports += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._sink = port
        return port
