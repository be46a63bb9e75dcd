#!/usr/bin/env bash
# Install what this checkout needs into a project venv (.venv), idempotently.
#   scripts/bootstrap.sh            # demo/dev: Pi + cloud + owner + demo extras
#   scripts/bootstrap.sh --test     # also the test tools (real servers, clients)
# Debian packages (mosquitto, mosquitto-clients) are installed with apt-get when
# running as root and missing; otherwise we say what to install and stop.
set -euo pipefail
cd "$(dirname "$0")/.."

WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1

log() { echo "[bootstrap] $*" >&2; }

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [[ $WANT_TEST == 1 ]]; then
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
  # the sharing service's PostgreSQL tests start their own server from these binaries
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
  # the stock age CLI: interop tests (our clips open with it, its files open with ours) and the crypto benchmark
  command -v age >/dev/null 2>&1 || need_apt+=(age)
  # the owner web app's end-to-end tests drive Debian's chromium with Playwright (never `playwright install`)
  [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
fi
# the owner web app is built with npm (doorbell/clients/web); a Python install needs no Node.js at run time
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if (( ${#need_apt[@]} )); then
  if [[ $(id -u) == 0 ]]; then
    log "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    log "missing Debian packages: ${need_apt[*]} (run: sudo apt-get install ${need_apt[*]})"
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  # On Raspberry Pi OS, picamera2 comes from apt (python3-picamera2): let the venv see it.
  if [[ -e /usr/lib/python3/dist-packages/picamera2 ]]; then
    "$PY" -m venv --system-site-packages .venv
  else
    "$PY" -m venv .venv
  fi
fi

extras="pi,cloud,owner,demo"
[[ $WANT_TEST == 1 ]] && extras="$extras,test"
stamp=".venv/.installed-$(cat setup.py | sha256sum | cut -c1-16)-${extras//,/-}"
if [[ ! -e "$stamp" ]]; then
  log "installing Python packages [$extras] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[${extras}]"
  if [[ $WANT_TEST == 1 ]]; then
    # picamera2's sources, for checking our backend against its API; it cannot
    # import off a Pi (it needs libcamera), so none of its dependencies are needed.
    .venv/bin/python -m pip install -q --no-deps picamera2
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
web=doorbell/clients/web
if [[ ! -f $web/dist/index.html || -n $(find $web/src $web/package-lock.json $web/build.mjs -newer $web/dist/index.html 2>/dev/null) ]]; then
  log "building the owner web app (npm ci && npm run build in $web)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build)
fi
log "ready: .venv/bin/doorbell"
