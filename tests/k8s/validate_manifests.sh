#!/usr/bin/env bash
# Renders every kustomization under K8S_DIR that is not a Component and validates each
# rendering on its own with the in-repo validator (tests/k8s/validator/validate.mjs
# --strict), then checks what the validator cannot see: every image was set by an overlay
# (no bare `stead` outside the base, which is never applied on its own). Last, a copy of
# a rendering with a misspelt field must fail, so a clean run means something.
#
#   tests/k8s/validate_manifests.sh k8s [VALIDATOR_DIR]
#
# Exit 0 when all pass, 1 when any fails, 77 (ctest SKIP) when kubectl or node is missing.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
k8s_dir=${1:?usage: validate_manifests.sh K8S_DIR [VALIDATOR_DIR]}
validator_dir=${2:-$here/validator}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
command -v kubectl >/dev/null || skip "kubectl not found (needed for kubectl kustomize)"
command -v node >/dev/null || skip "node not found (needed for the manifest validator)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
  fail "node $(node --version) is older than 18, which the validator needs"
[ -d "$validator_dir/node_modules" ] ||
  fail "no $validator_dir/node_modules: run scripts/setup (npm ci in $validator_dir)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# cert-manager's kinds have no schema in the validator: check_cert_manager.py checks
# them, and how the members mount and name their certificates.
validate() {
  node "$validator_dir/validate.mjs" --strict \
    --skip-kind cert-manager.io/v1/Certificate --skip-kind cert-manager.io/v1/Issuer "$@"
}

failed=0
checked=0
canary=""
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
  if ! report=$(validate "$out" 2>&1); then
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
  [ -z "$canary" ] && grep -q '^kind: StatefulSet' "$out" && canary=$out
  echo "ok   $rel: ${report##*$'\n'}"
done < <(find "$k8s_dir" -name kustomization.yaml | sort)

[ "$checked" -gt 0 ] || fail "no kustomization found under $k8s_dir"

# The canary: `replicas` of the first StatefulSet rendered, misspelt.
[ -n "$canary" ] || fail "no rendering has a StatefulSet to misspell a field in"
sed '0,/^  replicas:/s//  replicaz:/' "$canary" >"$work/misspelt.yaml"
if report=$(validate "$work/misspelt.yaml" 2>&1) ||
   ! grep -q '/spec/replicaz: unknown field "replicaz" \[unknown-field\]' <<<"$report"; then
  echo "FAIL: the validator did not report a misspelt field in a copy of $(basename "$canary"):"
  echo "$report"
  failed=1
else
  echo "ok   misspelt copy of $(basename "$canary") refused: $(grep -m1 unknown-field <<<"$report")"
fi
exit "$failed"
