#!/usr/bin/env bash
# Sets up core on a fresh Debian machine, as root.  Idempotent: running it again only updates.
#
#   ./install.sh           Debian packages core needs, a virtualenv in /opt/core (on Debian's own
#                          /usr/bin/python3, readable by every user) with core copied into it,
#                          /usr/local/bin/core, the "core" group and a systemd unit (not enabled).
#                          The installed core does not use this clone: move or delete it freely.
#                          $CORE_PREFIX installs somewhere else than /opt/core (then no
#                          /usr/local/bin/core, group or unit: for trying an install side by side).
#   ./install.sh --test    what the test suite needs, into ./.venv next to this file: core itself
#                          (editable), the test dependencies, the Debian packages the tests drive
#                          (registry, skopeo, busybox, runc, ...) and the out-of-tree test drivers.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-install}
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

if [[ $(id -u) != 0 ]]; then
  echo "install.sh: run as root (core manages namespaces, mounts and networks)" >&2
  exit 1
fi

packages() {  # the lines of the package lists given, without comments
  sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$@" | tr '\n' ' '
}

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  # refresh the package lists when they are missing or older than a day
  if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1) ]]; then
    apt-get update -qq
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

packaged_etcd_off() {
  # Debian's etcd-server enables a stand-alone etcd service on localhost; core's daemon runs its
  # own members (swarm managers), so the packaged one is stopped and disabled where systemd runs
  if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet etcd.service 2>/dev/null; then
    systemctl disable --now etcd.service >/dev/null 2>&1 || true
  fi
}

launcher() {  # $1 the virtualenv's python, $2 the `core` command to write (over pip's script)
  local root
  # -I: not from the current directory (this clone), but from where core is installed
  root=$(cd / && "$1" -I -c 'import core, os; print(os.path.dirname(os.path.dirname(os.path.abspath(core.__file__))))')
  cat > "$2.tmp" <<EOF
#!$1 -IS
# core's command line, written by install.sh.  -I -S: no site processing, ~3 ms sooner on every
# command; the CLI needs only the standard library ("core daemon" runs site itself).
import sys
sys.path.insert(0, "$root")
from core.cli.main import main
sys.exit(main())
EOF
  chmod 755 "$2.tmp"
  mv -f "$2.tmp" "$2"
}

command -v python3 >/dev/null || apt_install python3   # a minimal Debian may have none
python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || {
  echo "install.sh: core needs Python 3.11 or newer as python3" >&2; exit 1; }

case $mode in
  install)
    apt_install $(packages ci/apt-runtime.txt)
    packaged_etcd_off
    prefix=${CORE_PREFIX:-/opt/core}
    # Debian's python3, not whichever python3 comes first on root's PATH (one under /root is
    # unreadable for the members of the core group who run the CLI)
    venv_ok=$( [[ -x $prefix/venv/bin/python ]] && "$prefix/venv/bin/python" -c \
      'import sys; print(sys.base_prefix == "/usr")' 2>/dev/null || true)
    [[ $venv_ok == True ]] || { rm -rf "$prefix/venv"; /usr/bin/python3 -m venv "$prefix/venv"; }
    "$prefix/venv/bin/pip" install -q --upgrade pip
    # a copy, not a link to this clone (no editable install): the build directory is scratch
    "$prefix/venv/bin/pip" install -q --upgrade --no-cache-dir .
    rm -rf build ./*.egg-info
    "$prefix/venv/bin/python" -m compileall -q -j 0 "$("$prefix/venv/bin/python" -I -c \
      'import core, os; print(os.path.dirname(core.__file__))')" >/dev/null
    launcher "$prefix/venv/bin/python" "$prefix/venv/bin/core"
    chmod -R a+rX "$prefix"
    if [[ -z ${CORE_PREFIX:-} ]]; then
      ln -sf "$prefix/venv/bin/core" /usr/local/bin/core
      getent group core >/dev/null || groupadd --system core
      install -D -m 0644 contrib/core.service /etc/systemd/system/core.service
    fi
    echo "core installed: $("$prefix/venv/bin/core" --version)"
    ;;
  --test)
    apt_install $(packages ci/apt-runtime.txt ci/apt-packages.txt)
    packaged_etcd_off
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    # compat mode: a plain path entry, no import hook on the CLI's start-up path
    .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
    # the out-of-tree test drivers, installed the way a third party's driver would be
    .venv/bin/pip install -q --no-deps ./tests/plugins/core-dummy-driver ./tests/plugins/core-dummy-twin
    # the out-of-tree executor=runc example (examples/), proven by the same conformance suite
    .venv/bin/pip install -q --no-deps ./examples/core-runc-executor
    # bytecode up front: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every CLI call and
    # every daemon start would compile the editable sources again (~10 ms for one CLI module)
    .venv/bin/python -m compileall -q -j 0 core drivers >/dev/null
    launcher "$PWD/.venv/bin/python" .venv/bin/core
    ;;
  *)
    echo "usage: ./install.sh [--test]" >&2
    exit 2
    ;;
esac
