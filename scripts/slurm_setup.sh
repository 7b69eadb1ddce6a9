#!/usr/bin/env bash
# The programs of the tests' one-node Slurm cluster (tests/helpers/slurm.py): Debian's slurm-wlm, slurmdbd, munge
# and mariadb-server (slurmdbd keeps the accounting that sacct, and so submitit, reads job states from). Instant
# when they are there; installed with apt when this is a Debian machine and we are root (CI), else a note: the
# cluster's tests then skip and say why. SUPERB_REDUNDANCY_NO_SLURM=1 skips this.
set -euo pipefail
[ "${SUPERB_REDUNDANCY_NO_SLURM:-0}" = 1 ] && exit 0
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if have slurmctld && have slurmd && have slurmdbd && have munged && have mariadbd && have sacct; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[slurm] not installed (needs root on Debian: apt-get install slurm-wlm slurmdbd munge mariadb-server);" \
       "the tests against a Slurm cluster will skip"
  exit 0
fi
echo "[slurm] installing slurm-wlm, slurmdbd, munge and mariadb-server for the tests' Slurm cluster"
export DEBIAN_FRONTEND=noninteractive
# the packages' own services are not started here (policy-rc.d in containers); the tests start their own daemons
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server >/dev/null
echo "[slurm] done"
