#!/usr/bin/env bash
# Makes the demo CA and the `demo` credential used by gateways/ (credentialName: demo).
# The layout is that of a mounted Kubernetes TLS Secret: demo/tls.crt, demo/tls.key, demo/ca.crt.
# Demo only: never use these keys for anything real.
set -euo pipefail
cd "$(dirname "$0")"
days=${DAYS:-825}
mkdir -p demo
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=Portcullis Demo CA" -keyout demo-ca.key -out demo/ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout demo/tls.key -out demo.csr 2>/dev/null
openssl x509 -req -in demo.csr -CA demo/ca.crt -CAkey demo-ca.key -CAcreateserial -days "$days" -out demo/tls.crt \
  -extfile <(printf 'subjectAltName=DNS:localhost,DNS:*.localhost,DNS:portcullis.local,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n') 2>/dev/null
chmod 644 demo/tls.key
rm -f demo.csr demo/ca.srl demo-ca.srl
echo "wrote $(pwd)/demo/{tls.crt,tls.key,ca.crt} (CA key: demo-ca.key)"
