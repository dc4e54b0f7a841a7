#!/usr/bin/env bash
# The Helm chart deploy/helm/cloister-router: `helm lint`, then rendering
# with Helm's own template engine for several value sets (in-chart
# PostgreSQL with 3 replicas; external database with chain settlement, join
# tokens, TLS and static nodes; everything from existing Secrets; SQLite
# with 1 replica), validation of every manifest against the Kubernetes
# 1.37 schemas (strict), and checks of what the router needs (replicas,
# probes on /healthz, Prometheus annotations, Secrets and ConfigMaps mounted
# where the env variables point, the database wiring). Value sets that
# cannot work must be refused with a clear message (SQLite with several
# replicas, no policy, ...). With a cloister binary as $1, every env name
# must be one `cloister router --help` lists.
# Python packages: helm-python-sdk, kubernetes-validate, PyYAML (PyPI),
# installed when missing by scripts/lib/deploy-pydeps.sh.
#
#   scripts/tests/deploy-chart.sh [PATH/TO/cloister]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source-path=SCRIPTDIR/../..
source scripts/lib/deploy-pydeps.sh
deploy_pydeps_install
args=()
if [ -n "${1:-}" ]; then args=(--cloister "$1"); fi
PYTHONPATH="$DEPLOY_PYDEPS" python3 scripts/tests/deploy_chart.py "${args[@]}"
