#!/usr/bin/env bash
# Packs the Istio YAML under DIR into ConfigMaps PREFIX-1, PREFIX-2, ... of at most ~900 KB
# each (a ConfigMap holds 1 MiB) and prints them; keys are the paths with `/` as `_`.
#
#   deploy/split-configmaps.sh gateways portcullis-gateways portcullis-ingress \
#     | kubectl apply --server-side -f -
#
# (--server-side: client-side apply copies each object into an annotation limited to 256 KiB.)
# Use with components/config-configmaps, which mounts PREFIX-1..4 into one volume.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 DIR PREFIX NAMESPACE" >&2
  exit 2
fi
dir=${1%/} prefix=$2 namespace=$3
n=1 size=0 args=()
flush() {
  kubectl -n "$namespace" create configmap "$prefix-$n" "${args[@]}" --dry-run=client -o yaml
  echo ---
  n=$((n + 1)) size=0 args=()
}
while IFS= read -r f; do
  s=$(stat -c %s "$f")
  if [ ${#args[@]} -gt 0 ] && [ $((size + s)) -gt 900000 ]; then flush; fi
  key=${f#"$dir"/}
  args+=("--from-file=${key//\//_}=$f") size=$((size + s))
done < <(find "$dir" \( -name '*.yaml' -o -name '*.yml' \) -type f | sort)
if [ ${#args[@]} -gt 0 ]; then flush; fi
echo "$((n - 1)) ConfigMap(s): delete any $prefix-N above that number left from a larger config" >&2
