#!/usr/bin/env bash
# Renders every kustomization under K8S_DIR that is not a Component and validates each
# rendering on its own with VALIDATOR_DIR/validate.mjs --strict, then checks what the
# validator cannot see: every image was set by an overlay (no bare `stead` outside the
# base, which is never applied on its own).
#
#   tests/k8s/validate_manifests.sh k8s ../shared/k8s-validate
#
# Exit 0 when all pass, 1 when any fails, 77 (ctest SKIP) when a tool is missing.
set -uo pipefail

k8s_dir=${1:?usage: validate_manifests.sh K8S_DIR VALIDATOR_DIR}
validator_dir=${2:?usage: validate_manifests.sh K8S_DIR VALIDATOR_DIR}

here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
command -v kubectl >/dev/null || skip "kubectl not found (needed for kubectl kustomize)"
command -v node >/dev/null || skip "node not found"
python3 -c 'import yaml' 2>/dev/null || skip "python3 with yaml not found (python3-yaml)"
[ -f "$validator_dir/validate.mjs" ] || skip "no validator at $validator_dir"
[ -d "$validator_dir/node_modules" ] || skip "run 'npm ci' in $validator_dir first"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=0
checked=0
while IFS= read -r kustomization; do
  dir=$(dirname "$kustomization")
  rel=${dir#"$k8s_dir"/}
  grep -q '^kind: Component' "$kustomization" && continue
  checked=$((checked + 1))
  out="$work/$(echo "$rel" | tr / -).yaml"
  if ! kubectl kustomize "$dir" >"$out" 2>"$work/err"; then
    echo "FAIL $rel: kubectl kustomize failed:"; cat "$work/err"
    failed=1
    continue
  fi
  # cert-manager's kinds have no schema there: check_cert_manager.py checks them, and
  # how the members mount and name their certificates.
  if ! report=$(node "$validator_dir/validate.mjs" --strict \
      --skip-kind cert-manager.io/v1/Certificate --skip-kind cert-manager.io/v1/Issuer \
      "$out" 2>&1); then
    echo "FAIL $rel:"; echo "$report"
    failed=1
    continue
  fi
  if ! tls_report=$(python3 "$here/check_cert_manager.py" "$out" 2>&1); then
    echo "FAIL $rel:"; echo "$tls_report"
    failed=1
    continue
  fi
  # An image the overlay's `images:` did not rewrite (components are applied after the
  # overlay that includes them, so that overlay must set the image too).
  if [ "$rel" != base ] && bare=$(grep -nE '^\s*(- )?image: [^:/]+$' "$out"); then
    echo "FAIL $rel: image not set by an overlay:"; echo "$bare"
    failed=1
    continue
  fi
  echo "ok   $rel: ${report##*$'\n'}"
done < <(find "$k8s_dir" -name kustomization.yaml | sort)

[ "$checked" -gt 0 ] || { echo "FAIL: no kustomization found under $k8s_dir"; exit 1; }
exit "$failed"
