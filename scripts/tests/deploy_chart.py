"""Renders deploy/helm/cloister-router with Helm's own engine (helm-python-sdk)
for several value sets, validates every manifest against the Kubernetes
schemas (kubernetes-validate, strict) and checks what the router needs.
Run by scripts/tests/deploy-chart.sh, which provides the packages.

    python3 scripts/tests/deploy_chart.py [--cloister PATH/TO/cloister]
"""

import argparse
import base64
import re
import subprocess
import sys

import helm_python as helm
import kubernetes_validate
import yaml

CHART = "deploy/helm/cloister-router"
KUBERNETES = "1.37.0"  # the newest schemas kubernetes-validate 1.37.0 ships
RELEASE, NAMESPACE = "cloister", "inference"
POLICY = '[tdx]\nmrtd = ["' + "ab" * 48 + '"]\n'
TOKENS = ["provider-one-0123456789abcdef", "provider-two-0123456789abcdef"]
DEPLOYMENT_JSON = '{"chain_id": 1, "settlement": "0x0000000000000000000000000000000000000001"}\n'
# Set only so that Kubernetes can expand $(POSTGRES_PASSWORD) in DATABASE_URL.
HELPER_ENV = {"POSTGRES_PASSWORD"}

failures = []
passed = 0


def check(cond, what):
    global passed
    print(("ok: " if cond else "FAIL: ") + what)
    if cond:
        passed += 1
    else:
        failures.append(what)
    return cond


def render(values):
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def one(docs, kind, name=None):
    found = [d for _, d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def validate(case, docs):
    bad = []
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            bad.append(f"{path}: {e.message} at {'/'.join(map(str, e.path))}")
        except Exception as e:  # unknown kind or version: also a failure
            bad.append(f"{path}: {e}")
    for b in bad:
        print("    " + b)
    check(not bad, f"{case}: {len(docs)} manifests valid for Kubernetes {KUBERNETES} (strict)")


def router_env_names(binary):
    if not binary:
        return None
    text = subprocess.run([binary, "router", "--help"], check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"\[env: ([A-Z_]+)", text))


def check_router(case, docs, values, env_names, replicas, database):
    dep = one(docs, "Deployment")
    if not check(dep is not None, f"{case}: one router Deployment"):
        return
    spec = dep["spec"]
    pod = spec["template"]
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    check(spec["replicas"] == replicas, f"{case}: replicas {spec['replicas']} == {replicas}")
    nodes = values.get("nodes", [])
    check(c["args"] == ["router"] + [a for n in nodes for a in ("--node", n)], f"{case}: args are `router` and a --node per static node")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == 8080, f"{case}: container port http is 8080")
    check(env.get("CLOISTER_LISTEN", {}).get("value") == "0.0.0.0:8080", f"{case}: CLOISTER_LISTEN 0.0.0.0:8080")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == "/healthz" and get.get("port") in ("http", 8080), f"{case}: {probe} on /healthz")
    ann = pod["metadata"].get("annotations", {})
    check(
        ann.get("prometheus.io/scrape") == "true"
        and ann.get("prometheus.io/port") == "8080"
        and ann.get("prometheus.io/path") == "/metrics",
        f"{case}: Prometheus scrape annotations (port 8080, /metrics)",
    )
    psc, csc = pod["spec"].get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{case}: pod runs as non-root")
    check(
        csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False,
        f"{case}: read-only root filesystem, no privilege escalation",
    )
    if env_names is not None:
        unknown = sorted(set(env) - env_names - HELPER_ENV)
        check(not unknown, f"{case}: every env name is in `cloister router --help` (unknown: {unknown})")

    # Everything the pod refers to is rendered (or an existing Secret the values name).
    secrets = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Secret"}
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "ConfigMap"}
    existing = {
        values.get(k, {}).get("existingSecret")
        for k in ("joinTokens", "postgresql")
    } | {
        values.get("database", {}).get("external", {}).get("existingSecret"),
        values.get("chain", {}).get("settlementKey", {}).get("existingSecret"),
        values.get("tls", {}).get("secretName"),
    }
    existing.discard(None)
    existing.discard("")

    def secret_has(name, key):
        if name in existing:
            return True
        return name in secrets and key in secrets[name].get("data", {})

    for name, e in env.items():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(secret_has(ref["name"], ref["key"]), f"{case}: env {name} from Secret {ref['name']}/{ref['key']} exists")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    check(set(mounts) <= set(volumes), f"{case}: every volumeMount has a volume")
    claims = {d["metadata"]["name"] for _, d in docs if d["kind"] == "PersistentVolumeClaim"}

    def file_provided(var, what):
        """The file an env variable names comes from a mounted ConfigMap/Secret key."""
        path = env.get(var, {}).get("value", "")
        for vol, mount in mounts.items():
            if not path.startswith(mount + "/"):
                continue
            rel = path[len(mount) + 1:]
            v = volumes[vol]
            if "configMap" in v:
                cm = configmaps.get(v["configMap"]["name"], {})
                return check(rel in cm.get("data", {}), f"{case}: {var} is {what} from ConfigMap key {rel}")
            if "secret" in v:
                s = v["secret"]
                items = {i["path"]: i["key"] for i in s.get("items", [])}
                key = items.get(rel, rel if not items else None)
                return check(key is not None and secret_has(s["secretName"], key), f"{case}: {var} is {what} from Secret {s['secretName']}/{key}")
        return check(False, f"{case}: {var}={path!r} is on no mounted ConfigMap or Secret")

    file_provided("CLOISTER_POLICY", "the policy")
    cm = configmaps.get(volumes.get("config", {}).get("configMap", {}).get("name"), {})
    check(cm.get("data", {}).get("policy.toml", "").strip() == values["policy"].strip(), f"{case}: the policy is the one given")
    data_vol = volumes.get(next((n for n, p in mounts.items() if p == env["CLOISTER_DATA_DIR"]["value"]), ""), {})
    check(bool(data_vol), f"{case}: CLOISTER_DATA_DIR is a mounted volume (the root filesystem is read-only)")

    chain = values.get("chain", {}).get("rpcUrl")
    check(("CLOISTER_RPC_URL" in env) == bool(chain), f"{case}: settlement settings {'present' if chain else 'absent'}")
    if chain:
        file_provided("CLOISTER_SETTLEMENT_KEY_FILE", "the settlement key")
        file_provided("CLOISTER_CHAIN_DEPLOYMENT", "the deployment file")
    tokens = values.get("joinTokens", {})
    has_tokens = bool(tokens.get("tokens") or tokens.get("existingSecret"))
    check(("CLOISTER_JOIN_TOKENS" in env) == has_tokens, f"{case}: CLOISTER_JOIN_TOKENS {'from a Secret' if has_tokens else 'absent'}")
    if tokens.get("tokens"):
        ref = env["CLOISTER_JOIN_TOKENS"]["valueFrom"]["secretKeyRef"]
        got = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
        check(got == ",".join(tokens["tokens"]), f"{case}: join tokens stored comma-separated")
    if values.get("tls", {}).get("secretName"):
        check(c["readinessProbe"]["httpGet"].get("scheme") == "HTTPS", f"{case}: probes use HTTPS with a TLS listener")

    # The database.
    sts = one(docs, "StatefulSet")
    if database == "postgresql":
        url = env.get("DATABASE_URL", {}).get("value", "")
        pg_svc = [d for _, d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
        check(len(pg_svc) == 1 and f"@{pg_svc[0]['metadata']['name']}:5432/" in url, f"{case}: DATABASE_URL points at the PostgreSQL Service")
        check("$(POSTGRES_PASSWORD)" in url and list(env).index("POSTGRES_PASSWORD") < list(env).index("DATABASE_URL"),
              f"{case}: DATABASE_URL takes the password from POSTGRES_PASSWORD, defined before it")
        if check(sts is not None, f"{case}: PostgreSQL StatefulSet"):
            pg = sts["spec"]["template"]
            check(pg_svc and pg_svc[0]["spec"]["selector"].items() <= pg["metadata"]["labels"].items(), f"{case}: PostgreSQL Service selects its pod")
            check(bool(sts["spec"].get("volumeClaimTemplates")), f"{case}: PostgreSQL has a volume claim template")
            image = pg["spec"]["containers"][0]["image"]
            check(re.fullmatch(r"postgres:\d+\.\d+(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image) is not None, f"{case}: PostgreSQL image pinned ({image})")
            pg_args = " ".join(pg["spec"]["containers"][0].get("args", []))
            m = re.search(r"max_connections=(\d+)", pg_args)
            check(m is not None and int(m.group(1)) >= (replicas + 1) * 16, f"{case}: PostgreSQL max_connections covers {replicas}+1 router pods of 16 connections")
            pg_env = {e["name"]: e for e in pg["spec"]["containers"][0]["env"]}
            ref = pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
            check(ref == env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"], f"{case}: router and PostgreSQL read the same password")
            check(secret_has(ref["name"], ref["key"]), f"{case}: PostgreSQL password Secret exists")
    else:
        check(sts is None, f"{case}: no PostgreSQL StatefulSet")
    if database == "external":
        check("valueFrom" in env.get("DATABASE_URL", {}), f"{case}: DATABASE_URL from a Secret")
    if database == "sqlite":
        check("DATABASE_URL" not in env, f"{case}: no DATABASE_URL (SQLite in the data directory)")
        check("persistentVolumeClaim" in data_vol and data_vol["persistentVolumeClaim"]["claimName"] in claims,
              f"{case}: the data directory is a rendered PersistentVolumeClaim")
        check(spec["strategy"]["type"] == "Recreate", f"{case}: Recreate strategy (never two routers on one SQLite file)")

    # The Service and the disruption budget select the router pods.
    labels = pod["metadata"]["labels"]
    svc = [d for _, d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") != "None"]
    check(len(svc) == 1 and svc[0]["spec"]["selector"].items() <= labels.items()
          and svc[0]["spec"]["ports"][0]["targetPort"] in ("http", 8080), f"{case}: Service selects the router pods' http port")
    pdb = one(docs, "PodDisruptionBudget")
    if replicas > 1:
        check(pdb is not None and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{case}: PodDisruptionBudget selects the router pods")
    else:
        check(pdb is None, f"{case}: no PodDisruptionBudget for one replica")


def must_fail(case, values, expect):
    try:
        render(values)
    except helm.HelmError as e:
        msg = str(e)
        check(expect in msg, f"{case}: refused with {expect!r}" + ("" if expect in msg else f" (got: {msg})"))
        return
    check(False, f"{case}: rendered, but must be refused")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cloister", help="a cloister binary, to check env names against its --help")
    args = ap.parse_args()
    env_names = router_env_names(args.cloister)
    if env_names is None:
        print("skip: no cloister binary given; not checking env names against `cloister router --help`")

    lint = helm.lint(CHART)
    for m in lint.get("messages", []):
        print(f"    lint: {m}")
    check(not lint.get("errors") and not any(m.get("severity", 0) > 1 for m in lint.get("messages", [])),
          "helm lint: no warnings or errors")

    # The validator must catch a misspelt field, else "valid" means nothing.
    docs = render({"policy": POLICY})
    broken = yaml.safe_load(yaml.safe_dump(one(docs, "Deployment")))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    try:
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
        check(False, "strict validation refuses a misspelt field (spec.replica)")
    except kubernetes_validate.ValidationError:
        check(True, "strict validation refuses a misspelt field (spec.replica)")

    cases = [
        ("defaults (in-chart PostgreSQL)", {"policy": POLICY}, 3, "postgresql"),
        ("external database, chain, join tokens, TLS, nodes", {
            "policy": POLICY,
            "replicaCount": 5,
            "nodes": ["http://10.0.0.5:7070", "https://node.example.net:7443"],
            "database": {"type": "external", "external": {"url": "postgres://cloister:pw@db.example.net:5432/cloister?sslmode=require"}},
            "joinTokens": {"tokens": TOKENS},
            "chain": {"rpcUrl": "https://rpc.example.net", "deployment": DEPLOYMENT_JSON,
                      "settlementKey": {"value": "0x" + "11" * 32}},
            "tls": {"secretName": "router-tls"},
            "env": {"CLOISTER_REQUESTS_PER_MINUTE": "120"},
        }, 5, "external"),
        ("external database and secrets from existing Secrets", {
            "policy": POLICY,
            "database": {"type": "external", "external": {"existingSecret": "ledger-db", "existingSecretKey": "url"}},
            "joinTokens": {"existingSecret": "join", "existingSecretKey": "tokens"},
            "chain": {"rpcUrl": "https://rpc.example.net", "deployment": DEPLOYMENT_JSON,
                      "settlementKey": {"existingSecret": "operator", "existingSecretKey": "key"}},
            "postgresql": {"existingSecret": "unused"},
        }, 3, "external"),
        ("SQLite, one replica", {"policy": POLICY, "replicaCount": 1, "database": {"type": "sqlite"}}, 1, "sqlite"),
    ]
    for case, values, replicas, database in cases:
        try:
            docs = render(values)
        except helm.HelmError as e:
            check(False, f"{case}: renders ({e})")
            continue
        validate(case, docs)
        check_router(case, docs, values, env_names, replicas, database)

    must_fail("no policy", {}, "policy is required")
    must_fail("misspelt value (values.schema.json)", {"policy": POLICY, "replicas": 2}, "replicas")
    must_fail("replicaCount 0 (values.schema.json)", {"policy": POLICY, "replicaCount": 0}, "replicaCount")
    must_fail("SQLite with 3 replicas", {"policy": POLICY, "database": {"type": "sqlite"}}, "set replicaCount=1")
    must_fail("SQLite with 2 replicas", {"policy": POLICY, "replicaCount": 2, "database": {"type": "sqlite"}}, "set replicaCount=1")
    must_fail("unknown database type", {"policy": POLICY, "database": {"type": "mysql"}}, "/database/type")
    must_fail("external without URL", {"policy": POLICY, "database": {"type": "external"}}, "needs database.external")
    must_fail("external SQLite URL", {"policy": POLICY, "database": {"type": "external", "external": {"url": "sqlite:///x"}}}, "must be a postgres:// URL")
    must_fail("short join token", {"policy": POLICY, "joinTokens": {"tokens": ["short"]}}, "at least 16 characters")
    must_fail("chain without key", {"policy": POLICY, "chain": {"rpcUrl": "https://rpc.example.net", "deployment": "{}"}}, "settlementKey")
    must_fail("chain without deployment", {"policy": POLICY, "chain": {"rpcUrl": "https://rpc.example.net"}}, "chain.deployment")

    for f in failures:
        print("FAILED: " + f)
    print(f"deploy-chart: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
