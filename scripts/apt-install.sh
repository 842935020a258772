#!/usr/bin/env bash
# Installs Debian packages a test script found missing: `apt-install.sh WHO PKG...`
# (WHO names the caller in the messages). Nothing to do without packages; an
# `apt-get update` that fails is reported and the install tried anyway (the lists may
# be recent enough).
set -euo pipefail
who="$1"
shift
[ $# -gt 0 ] || exit 0
echo "$who: installing $*"
export DEBIAN_FRONTEND=noninteractive
# Another apt (a package install elsewhere on the machine) may hold the lock for a while.
apt-get -o DPkg::Lock::Timeout=900 update -qq || echo "$who: apt-get update reported a problem; trying the install anyway"
apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "$@"
