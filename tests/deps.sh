#!/bin/sh
# Test dependencies: Debian packages. Installed with apt-get when run as root and one is
# missing; otherwise named, with the command to install them.
set -u
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in libcmocka-dev netcat-openbsd ncat strace socat python3 python3-pytest python3-pytest-timeout clang libclang-rt-dev \
         iproute2 util-linux procps openbsd-inetd systemd chromium fonts-wqy-microhei ${SOCKFLOW_EXTRA_DEPS:-}; do
    have_pkg "$p" || need="$need $p"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test dependencies:$need"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting services (openbsd-inetd would start inetd).
    policy=/usr/sbin/policy-rc.d
    [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1; }
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $need >/dev/null
    rc=$?
    [ "${made_policy:-0}" = 1 ] && rm -f "$policy"
    [ $rc = 0 ] || { echo "apt-get install$need failed" >&2; exit 1; }
    exit 0
fi
echo "missing test dependencies:$need" >&2
echo "install them with: sudo apt-get install$need" >&2
exit 1
