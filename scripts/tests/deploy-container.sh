#!/usr/bin/env bash
# Static checks of deploy/container/Containerfile.router (no container engine
# is needed, and none is used):
#  - base images pinned to an exact version tag or a digest; the builder's
#    Rust is at least the workspace's rust-version and the builder and the
#    runtime are the same Debian release (the binary links the builder's glibc);
#  - the build: `cargo build --release --locked -p cloister-cli`, no GPU feature;
#  - the runtime stage: binary at /usr/local/bin/cloister, non-root USER,
#    ENTRYPOINT ["cloister"], CMD `router --listen 0.0.0.0:8080`, EXPOSE 8080;
#  - the HEALTHCHECK command itself, run here against a local HTTP server:
#    it must pass on 200 from /healthz and fail on 503 or a closed port;
#  - the ignore file beside it leaves in what the workspace build reads;
#  - with a cloister binary as $1: the CMD's flags and the ENV names are ones
#    `cloister router --help` lists (without $1 that part is skipped).
# Needs bash and python3 (standard library only); installs nothing.
#
#   scripts/tests/deploy-container.sh [PATH/TO/cloister]
set -euo pipefail
cd "$(dirname "$0")/../.."
help_file=""
if [ -n "${1:-}" ]; then
  help_file=$(mktemp)
  trap 'rm -f "$help_file"' EXIT
  "$1" router --help >"$help_file"
fi
exec python3 - "$help_file" <<'PY'
import fnmatch, http.server, json, re, shlex, socket, subprocess, sys, threading, tomllib

FILE = "deploy/container/Containerfile.router"
IGNORE = FILE + ".dockerignore"
passed, failures = 0, []


def check(cond, what):
    global passed
    print(("ok: " if cond else "FAIL: ") + what)
    if cond:
        passed += 1
    else:
        failures.append(what)
    return cond


# Instructions, with continuation lines joined and comments dropped.
lines, cur = [], ""
for raw in open(FILE):
    s = raw.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append((cur + s).strip())
    cur = ""
instrs = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]

args = {}
stages = []  # [{"from": image, "name": ..., "instrs": [...]}]
for op, rest in instrs:
    if op == "ARG" and not stages and "=" in rest:
        k, v = rest.split("=", 1)
        args[k] = v
    elif op == "FROM":
        m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda g: args.get(g.group(1) or g.group(2), "?"), m.group(1))
        stages.append({"from": image, "name": m.group(2), "instrs": []})
    elif stages:
        stages[-1]["instrs"].append((op, rest))
if not check(len(stages) >= 2, f"multi-stage build ({len(stages)} stages)"):
    sys.exit(1)
builder, runtime = stages[0], stages[-1]

PINNED = re.compile(r"[a-z0-9./-]+(:(\d+\.\d+(\.\d+)?)([-.][a-z0-9.-]+)?)?(@sha256:[0-9a-f]{64})?")
for st in stages:
    img = st["from"]
    m = PINNED.fullmatch(img)
    check(bool(m) and (m.group(2) or m.group(5)), f"base image {img} pinned to an exact version or a digest")

rust_version = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["rust-version"]
m = re.fullmatch(r"rust:(\d+)\.(\d+)\.(\d+)-(\w+).*", builder["from"])
if check(bool(m), f"builder is a versioned rust image ({builder['from']})"):
    have = tuple(map(int, m.groups()[:3]))
    want = tuple(map(int, (rust_version.split(".") + ["0"])[:3]))
    check(have >= want, f"builder Rust {'.'.join(map(str, have))} >= workspace rust-version {rust_version}")
    debian = {"12": "bookworm", "13": "trixie"}
    r = re.fullmatch(r"debian:(\d+)[.\d]*-slim.*|debian:(\w+)-\d+-slim.*", runtime["from"])
    release = r and (debian.get(r.group(1)) if r.group(1) else r.group(2))
    check(release == m.group(4), f"builder ({m.group(4)}) and runtime ({runtime['from']}) are the same Debian release")

runs = " ".join(rest for op, rest in builder["instrs"] if op == "RUN")
check("cargo build --release --locked -p cloister-cli" in runs, "builder runs cargo build --release --locked -p cloister-cli")
check("cuda" not in runs and "--features" not in runs and "--all-features" not in runs, "no cargo features (the router needs no GPU)")


def rt(op):
    return [rest for o, rest in runtime["instrs"] if o == op]


check(any(re.search(r"--from=builder\s+\S+\s+/usr/local/bin/cloister$", c) for c in rt("COPY")), "binary copied to /usr/local/bin/cloister")
user = (rt("USER") or ["root"])[-1].split(":")[0]
check(user not in ("root", "0"), f"runtime USER is not root ({user})")
check("ca-certificates" in " ".join(rt("RUN")), "runtime installs ca-certificates")
entry = json.loads((rt("ENTRYPOINT") or ["null"])[-1])
check(entry == ["cloister"], f"ENTRYPOINT {entry}")
cmd = json.loads((rt("CMD") or ["null"])[-1])
check(isinstance(cmd, list) and cmd[:1] == ["router"], f"CMD starts with router ({cmd})")
listen = cmd[cmd.index("--listen") + 1] if cmd and "--listen" in cmd else None
check(listen == "0.0.0.0:8080", f"CMD listens on 0.0.0.0:8080 ({listen})")
check(any("8080" in e.split() for e in rt("EXPOSE")), "EXPOSE 8080")
env_names = set()
for e in rt("ENV"):
    env_names |= {k for k, _ in (t.split("=", 1) for t in shlex.split(e))}

# The healthcheck, run for real against servers that answer 200 and 503.
hc = (rt("HEALTHCHECK") or [""])[-1]
m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc)
if check(bool(m) and "/healthz" in hc and "127.0.0.1/8080" in hc,
         "HEALTHCHECK (exec form) asks /healthz on port 8080"):
    argv = json.loads(m.group(1))
    check(argv[0] in ("bash", "/bin/bash", "cloister"), f"HEALTHCHECK runs {argv[0]}, which the image has")

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            code = self.server.code if self.path == "/healthz" else 404
            body = b'{"status":"x"}'
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    def serve(code):
        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        srv.code = code
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    ok_srv, bad_srv = serve(200), serve(503)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    for name, port, want in (("200", ok_srv.server_port, 0), ("503", bad_srv.server_port, 1), ("closed port", closed_port, 1)):
        run = [a.replace("/8080", f"/{port}") for a in argv]
        rc = subprocess.run(run, timeout=20, stderr=subprocess.DEVNULL).returncode
        check((rc == 0) == (want == 0), f"HEALTHCHECK with /healthz answering {name}: exit {rc}")

# The ignore file must not hide what the build reads.
# Docker's patterns are relative to the context root; a directory's pattern
# also hides what is below it. ("!" exceptions are not used here.)
patterns = [p.strip().strip("/") for p in open(IGNORE) if p.strip() and not p.startswith("#")]
members = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["members"]
needed = ["Cargo.toml", "Cargo.lock", "router/migrations/0001_initial.sql"] + [f"{m}/Cargo.toml" for m in members] + [f"{m}/src/any.rs" for m in members]


def ignored(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(pre, p) or (p.startswith("**/") and fnmatch.fnmatchcase(parts[-1], p[3:]))
               for p in patterns for pre in prefixes)


hidden = [p for p in needed if ignored(p)]
check(not hidden, f"{IGNORE} keeps the workspace's sources (hidden: {hidden})")
check(ignored("target/release/cloister") and ignored(".git/HEAD"), f"{IGNORE} leaves out target/ and .git/")

help_file = sys.argv[1]
if help_file:
    help_text = open(help_file).read()
    for flag in [a for a in cmd if a.startswith("--")]:
        check(re.search(rf"^\s+{re.escape(flag)}\b", help_text, re.M) is not None, f"CMD flag {flag} is in `cloister router --help`")
    for name in sorted(env_names):
        check(f"[env: {name}=" in help_text or f"[env: {name}]" in help_text, f"ENV {name} is in `cloister router --help`")
else:
    print(f"skip: no cloister binary given; not checking CMD flags {[a for a in cmd if a.startswith('--')]} and ENV {sorted(env_names)}")

for f in failures:
    print("FAILED: " + f)
print(f"deploy-container: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
