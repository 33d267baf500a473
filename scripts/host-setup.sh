#!/usr/bin/env bash
# Bring up a real server as a vnfctl host (Debian 12, as root, on the host itself).
#
#   sudo ./scripts/host-setup.sh --host a --store-url http://MGMT:8780 \
#       --trust-store-key "$(cat store-key.pub)" --authorized-key "$(cat controller.pub)" \
#       --data-interface ens2f1 --dp-cores 8-15
#
# Installs what a host needs (libvirt with QEMU, sshd, Python), installs this checkout into
# /opt/vnfctl, then runs the same bring-up the lab runs on its hosts
# (python -m orchestrator.agent.bringup, here with --service systemd): the agent's config with
# the trusted store key, its sshd subsystem, the controller's key, a systemd unit. Idempotent.
# Every argument is passed to the bring-up; `--help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "host-setup.sh: run as root on the host" >&2
  exit 1
fi

# nftables: the guard of the data interface for DPs with an interface of their own; librte-meta-all:
# DPDK's libraries and drivers, with which a DPDK application from the store (dpdk-testpmd) runs.
PACKAGES=(libvirt-daemon-system qemu-system-x86 openssh-server python3-venv python3-dev gcc libc6-dev
          libvirt-dev pkg-config iproute2 util-linux nftables librte-meta-all)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PREFIX=${VNFCTL_PREFIX:-/opt/vnfctl}
[ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --upgrade "$PWD"
"$PREFIX/bin/python" -m dpdk_stub.fastpath build >/dev/null \
  || echo "host-setup.sh: DP fast path not built: DPs run their Python loop" >&2
exec "$PREFIX/bin/python" -m orchestrator.agent.bringup --service systemd "$@"
