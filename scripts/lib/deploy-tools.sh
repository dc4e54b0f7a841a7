# shellcheck shell=bash
# Sourced by scripts/test.sh: what the deploy/ tests and the `cloister
# measure` cross-checks need, installed when missing.
#   Debian: ovmf (the firmware measured), nftables (nft -c and the firewall
#           test), squashfs-tools and cryptsetup-bin (the image's model
#           volume), iproute2 and util-linux (network namespaces), systemd
#           (systemd-analyze verify)
#   PyPI:   sev-snp-measure 0.0.13 (Apache-2.0), the independent SEV-SNP
#           launch digest calculator, into $CLOISTER_SEV_SNP_MEASURE
#           (default ~/.cache/cloister/tools/sev-snp-measure); and the chart's
#           tools (scripts/lib/deploy-pydeps.sh)
# shellcheck source=deploy-pydeps.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-pydeps.sh"

export CLOISTER_SEV_SNP_MEASURE="${CLOISTER_SEV_SNP_MEASURE:-$HOME/.cache/cloister/tools/sev-snp-measure}"

deploy_tools_install() {
  local missing=()
  [ -f /usr/share/ovmf/OVMF.fd ] || missing+=(ovmf)
  command -v nft >/dev/null || missing+=(nftables)
  command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
  command -v veritysetup >/dev/null || missing+=(cryptsetup-bin)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
  if [ ! -d "$CLOISTER_SEV_SNP_MEASURE/sevsnpmeasure" ]; then
    echo "setup: installing sev-snp-measure 0.0.13 (PyPI) into $CLOISTER_SEV_SNP_MEASURE"
    python3 -m pip install --quiet --disable-pip-version-check --target "$CLOISTER_SEV_SNP_MEASURE" \
      'sev-snp-measure==0.0.13' 2>&1 | grep -v -e 'Running pip as' -e 'dependency resolver' || true
    [ -d "$CLOISTER_SEV_SNP_MEASURE/sevsnpmeasure" ] || { echo "setup: sev-snp-measure did not install" >&2; return 1; }
  fi
  deploy_pydeps_install
}
