# Sourced: installs anvil and solc (solcjs) from the npm registry into
# $CLOISTER_CHAIN_TOOLS (default ~/.cache/cloister/chain) when missing, and
# sets ANVIL and SOLCJS to their paths. Versions are pinned.
chain_tools_dir="${CLOISTER_CHAIN_TOOLS:-$HOME/.cache/cloister/chain}"
ANVIL="$chain_tools_dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
SOLCJS="$chain_tools_dir/node_modules/.bin/solcjs"
chain_tools_install() {
  if [ -x "$ANVIL" ] && [ -x "$SOLCJS" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "setup: npm is needed for anvil and solc (Debian package npm)" >&2
    return 1
  fi
  echo "setup: installing anvil 1.7.1 and solc 0.8.37 from the npm registry into $chain_tools_dir"
  mkdir -p "$chain_tools_dir"
  (cd "$chain_tools_dir" && npm install --no-audit --no-fund --silent \
    @foundry-rs/anvil-linux-amd64@1.7.1 solc@0.8.37)
}
