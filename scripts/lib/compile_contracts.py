"""Standard-JSON compilation of the Cloister contracts with solcjs.

Usage: compile_contracts.py SOLCJS [--check]
"""
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path("contracts-bindings")
SOURCES = ROOT / "solidity"
ARTIFACTS = ROOT / "artifacts"
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": True,
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def source_files():
    return sorted(p for p in SOURCES.rglob("*.sol"))


def sources_manifest(version):
    """What SOURCES.sha256 holds: `sha256  path` per source (as sha256sum
    prints it), then the compiler and the settings the artifacts came from."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(SOURCES).as_posix()}" for p in source_files()]
    lines.append(f"# solc {version} {json.dumps(SETTINGS, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def compile_all(solcjs):
    version = subprocess.run([solcjs, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    version = version.split("+")[0]
    request = {
        "language": "Solidity",
        "sources": {p.relative_to(SOURCES).as_posix(): {"content": p.read_text()} for p in source_files()},
        "settings": SETTINGS,
    }
    # solcjs exits before a pipe has taken all of a large answer: give it a
    # file (node writes files synchronously).
    with tempfile.TemporaryFile("w+") as answer:
        subprocess.run([solcjs, "--standard-json"], input=json.dumps(request).encode(), stdout=answer, check=True)
        answer.seek(0)
        text = "\n".join(line for line in answer.read().splitlines() if not line.startswith(">>> "))
    out = json.loads(text)
    errors = [e for e in out.get("errors", []) if e["severity"] == "error"]
    for e in out.get("errors", []):
        print(e.get("formattedMessage", e["message"]), file=sys.stderr)
    if errors:
        sys.exit("compile-contracts: solc reported errors")
    artifacts = {}
    for source, contracts in sorted(out["contracts"].items()):
        for name, c in sorted(contracts.items()):
            has_code = bool(c["evm"]["bytecode"]["object"])
            if not has_code or not any(item["type"] in ("function", "constructor") for item in c["abi"]):
                continue  # interfaces have no code; internal libraries are inlined
            artifacts[name] = {
                "contractName": name,
                "sourceName": source,
                "compiler": f"solc {version}",
                "abi": c["abi"],
                "bytecode": {"object": "0x" + c["evm"]["bytecode"]["object"]},
                "deployedBytecode": {"object": "0x" + c["evm"]["deployedBytecode"]["object"]},
            }
    return version, artifacts


def rendered(version, artifacts):
    files = {f"{name}.json": json.dumps(a, indent=1, sort_keys=True) + "\n" for name, a in artifacts.items()}
    files["SOURCES.sha256"] = sources_manifest(version)
    return files


def main():
    solcjs = sys.argv[1]
    check = "--check" in sys.argv[2:]
    version, artifacts = compile_all(solcjs)
    files = rendered(version, artifacts)
    if check:
        stale = [n for n, body in files.items() if not (ARTIFACTS / n).exists() or (ARTIFACTS / n).read_text() != body]
        extra = [p.name for p in ARTIFACTS.iterdir() if p.name not in files]
        if stale or extra:
            sys.exit(f"compile-contracts: artifacts are stale ({', '.join(stale + extra)}); run scripts/compile-contracts.sh")
        print("compile-contracts: artifacts are current")
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for p in ARTIFACTS.iterdir():
        if p.name not in files:
            p.unlink()
    for name, body in files.items():
        (ARTIFACTS / name).write_text(body)
    print(f"compile-contracts: wrote {len(artifacts)} artifacts with solc {version}")


main()
