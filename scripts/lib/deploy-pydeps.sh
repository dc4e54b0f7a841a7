# shellcheck shell=bash
# Sourced: the Python packages scripts/tests/deploy-chart.sh needs, installed
# with pip into $CLOISTER_DEPLOY_PYDEPS (default
# ~/.cache/cloister/pydeps-deploy) when missing; sets DEPLOY_PYDEPS to that
# directory (for PYTHONPATH). Versions are pinned.
#   helm-python-sdk      Helm's own Go template engine and linter (Helm v4
#                        SDK through a C library), Apache-2.0: renders the
#                        chart exactly as `helm template` does
#   kubernetes-validate  Kubernetes' OpenAPI schemas, offline, Apache-2.0
#   PyYAML               reads the rendered manifests, MIT
DEPLOY_PYDEPS="${CLOISTER_DEPLOY_PYDEPS:-$HOME/.cache/cloister/pydeps-deploy}"
deploy_pydeps_install() {
  if PYTHONPATH="$DEPLOY_PYDEPS" python3 -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    return 0
  fi
  echo "setup: installing helm-python-sdk 0.2.2, kubernetes-validate 1.37.0 and PyYAML 6.0.3 (PyPI) into $DEPLOY_PYDEPS"
  python3 -m pip install --quiet --disable-pip-version-check --target "$DEPLOY_PYDEPS" \
    'helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' 'PyYAML==6.0.3' 2>&1 \
    | grep -v -e 'Running pip as' -e 'dependency resolver' || true
  PYTHONPATH="$DEPLOY_PYDEPS" python3 -c 'import helm_python, kubernetes_validate, yaml'
}
