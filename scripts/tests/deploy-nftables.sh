#!/usr/bin/env bash
# The CVM's firewall (deploy/image/overlay/etc/nftables.conf):
#  1. `nft -c -f`: the kernel accepts the rules (checked, not applied);
#  2. loaded for real in a throwaway network namespace wired by veth to a
#     second one that stands for the host: every base chain drops by
#     default; a connection to 7070 comes in and gets its reply; one to any
#     other port does not; nothing the guest starts gets out (TCP, UDP);
#     loopback works. The same probes pass before the rules are loaded, so
#     each refusal is the firewall's.
# Runs in a new user+network namespace (unshare -rn), so it needs no root
# and changes nothing on this machine; nft cannot check rules without
# CAP_NET_ADMIN, which the namespace gives. Needs: nftables, util-linux
# (unshare), iproute2 (ip), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
rules=deploy/image/overlay/etc/nftables.conf

if ! unshare -rn true 2>/dev/null; then
  echo "FAIL: cannot create a user+network namespace here (unshare -rn); nft -c needs one without root"
  exit 1
fi

exec unshare -rn bash -euo pipefail -s "$rules" <<'INNER'
rules="$1"
failed=0
fail() { echo "FAIL: $*"; failed=1; }

if out="$(nft -c -f "$rules" 2>&1)"; then echo "ok: nft -c -f $rules"; else fail "nft -c -f $rules:"; echo "$out"; exit 1; fi

# The guest (this namespace, 10.0.2.15) and a peer standing for the host
# side of QEMU's user network (a nested namespace, 10.0.2.2), joined by veth.
ip link set lo up
ip link add veth-a type veth peer name veth-b
unshare -n sleep 120 &
peer=$!
trap 'kill $peer 2>/dev/null || true' EXIT
sleep 0.3
ip link set veth-b netns "$peer"
ip addr add 10.0.2.15/24 dev veth-a
ip link set veth-a up
nsenter -t "$peer" -n sh -c 'ip link set lo up; ip addr add 10.0.2.2/24 dev veth-b; ip link set veth-b up'

# Listeners answer every connection with one byte: the guest's on 7070 (the
# enclave) and 2222 (anything else), the peer's on 443.
serve='
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept(); c.sendall(b"!"); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
'
python3 -c "$serve" 7070 2222 & guest_srv=$!
nsenter -t "$peer" -n python3 -c "$serve" 443 & peer_srv=$!
trap 'kill $peer $guest_srv $peer_srv 2>/dev/null || true' EXIT
sleep 0.5

# connect HOST PORT: prints "reply" when a byte came back, else the error.
probe='
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", (host, port)); print("sent")
    else:
        s = socket.create_connection((host, port), timeout=1.5); print("reply" if s.recv(1) == b"!" else "no reply")
except OSError as e:
    print(type(e).__name__)
'
expect() {  # what, expected, command...
  local what="$1" want="$2" got
  shift 2
  got="$("$@" 2>&1)"
  if [ "$got" = "$want" ]; then echo "ok: $what ($got)"; else fail "$what: got '$got', expected '$want'"; fi
}
# Before the rules: the set-up works both ways, so a refusal below is the firewall's.
expect "without rules, guest -> peer:443 connects" reply python3 -c "$probe" 10.0.2.2 443 tcp
expect "without rules, peer -> guest:2222 connects" reply nsenter -t "$peer" -n python3 -c "$probe" 10.0.2.15 2222 tcp

nft -f "$rules"

# Every base chain: policy drop.
listing="$(nft list ruleset)"
for chain in input forward output; do
  if printf '%s\n' "$listing" | grep -A1 "chain $chain {" | grep -q "hook $chain priority filter; policy drop;"; then
    echo "ok: chain $chain drops by default"
  else
    fail "chain $chain is not 'policy drop'"
  fi
done

expect "peer -> guest:7070 connects and gets the reply" reply nsenter -t "$peer" -n python3 -c "$probe" 10.0.2.15 7070 tcp
expect "peer -> guest:2222 is dropped" TimeoutError nsenter -t "$peer" -n python3 -c "$probe" 10.0.2.15 2222 tcp
expect "guest -> peer:443 is refused" TimeoutError python3 -c "$probe" 10.0.2.2 443 tcp
expect "guest -> peer udp/53 is refused" PermissionError python3 -c "$probe" 10.0.2.2 53 udp
expect "guest loopback still works" reply python3 -c "$probe" 127.0.0.1 2222 tcp

if [ "$failed" -ne 0 ]; then echo "deploy-nftables: FAILED"; exit 1; fi
echo "deploy-nftables: all passed"
INNER
