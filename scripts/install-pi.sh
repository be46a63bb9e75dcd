#!/usr/bin/env bash
# Install the doorbell on Raspberry Pi OS (Bookworm or later), idempotently.
#
#   sudo scripts/install-pi.sh [--bundle DIR] [--dry-run]
#
# What it does (each step only if needed; a second run changes nothing and says so):
#   1. apt packages: python3-picamera2 (camera, from Raspberry Pi OS), python3-venv,
#      python3-lgpio (gpiozero's pin driver), mosquitto-clients (diagnostics)
#   2. a `doorbell` system user in the gpio and video groups
#   3. a venv in /opt/doorbell/venv with --system-site-packages (so apt's
#      picamera2 is importable) and this package with its `pi` extra; when apt
#      has numpy (python3-numpy, which picamera2's compiled helpers such as
#      python3-simplejpeg are built against), pip is held to that numpy
#      (/opt/doorbell/constraints.txt) and to an OpenCV wheel built for its
#      major version, so the venv never shadows it with another numpy
#   4. /etc/doorbell/device.yaml (0600, owned by doorbell) from the provisioned
#      bundle (--bundle, from `doorbell provision device`) or the commented default;
#      TLS files in /etc/doorbell/tls (client key 0600)
#   5. the spool in /var/lib/doorbell (0750, owned by doorbell)
#   6. systemd units doorbell-firmware and doorbell-agent installed, enabled and
#      (re)started; the agent only once the config holds its credentials
#
# Options:
#   --bundle DIR   device bundle from `doorbell provision device` (device.yaml + tls/)
#   --dry-run      print every action, change nothing
#   --root DIR     install into DIR instead of / (env DOORBELL_ROOT): apt, useradd and
#                  live systemctl are skipped, units are enabled with `systemctl --root`
#   --user NAME    service user (default doorbell; env DOORBELL_USER)
#   --extras LIST  pip extras (default pi; "" for the core only)
#   --pip-opts S   extra pip options (e.g. "--index-url ..."), env DOORBELL_PIP_OPTS
#   --no-start     install and enable, but do not (re)start services
#   -h, --help
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DOORBELL_ROOT:-/}
SVC_USER=${DOORBELL_USER:-doorbell}
EXTRAS=pi
PIP_OPTS=${DOORBELL_PIP_OPTS:-}
BUNDLE=""
DRY_RUN=0
START=1
PYTHON=${PYTHON:-/usr/bin/python3}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (( $# )); do
  case "$1" in
    --bundle) BUNDLE=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --root) ROOT=$2; shift 2 ;;
    --user) SVC_USER=$2; shift 2 ;;
    --extras) EXTRAS=$2; shift 2 ;;
    --pip-opts) PIP_OPTS=$2; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-pi: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

ROOT=${ROOT%/}
LIVE=0; [[ -z "$ROOT" ]] && LIVE=1          # installing onto this very system
R() { echo "${ROOT}$1"; }                   # a target path under the root

OPT=$(R /opt/doorbell)
VENV="$OPT/venv"
ETC=$(R /etc/doorbell)
STATE=$(R /var/lib/doorbell)
UNIT_DIR=$(R /etc/systemd/system)
PI_UNITS=(doorbell-firmware.service doorbell-agent.service)
APT_PACKAGES=(python3-venv python3-pip python3-picamera2 python3-lgpio mosquitto-clients ca-certificates)

CHANGES=0
log()  { echo "[install-pi] $*"; }
warn() { echo "[install-pi] warning: $*" >&2; }
die()  { echo "[install-pi] error: $*" >&2; exit 1; }

# act DESCRIPTION CMD...: one change. Printed always; run unless --dry-run.
act() {
  local what=$1; shift
  CHANGES=$((CHANGES + 1))
  if (( DRY_RUN )); then
    log "would: $what"
  else
    log "$what"
    "$@"
  fi
}

if (( LIVE )) && (( ! DRY_RUN )) && [[ $(id -u) != 0 ]]; then
  die "run as root (sudo $0 $*), or --dry-run to see what it would do"
fi
if [[ -n "$BUNDLE" ]]; then
  [[ -f "$BUNDLE/device.yaml" ]] || die "$BUNDLE/device.yaml not found (make it with: doorbell provision device ...)"
  BUNDLE=$(cd "$BUNDLE" && pwd)
fi

# ---------------------------------------------------------------- 0. platform
if (( LIVE )); then
  if [[ -r /etc/os-release ]]; then
    . /etc/os-release
    case "${VERSION_CODENAME:-}" in
      bookworm|trixie|forky) ;;
      *) warn "untested OS '${PRETTY_NAME:-unknown}': Raspberry Pi OS Bookworm or later is supported" ;;
    esac
  fi
fi

# ---------------------------------------------------------------- 1. apt
# apt_lists_stale: no package lists at all (a fresh image, or `apt-get clean` + lists removed),
# or none refreshed for a day: apt-cache would then call a package "not in this system's
# sources" when it only lacks an `apt-get update`.
APT_LISTS=${DOORBELL_APT_LISTS:-/var/lib/apt/lists}   # overridable for the installer's tests
apt_lists_stale() {
  local lists=$APT_LISTS
  compgen -G "$lists/*_Packages*" >/dev/null || return 0
  [[ -z $(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null) ]]
}
APT_UPDATED=0
APT_STALE=0
if (( LIVE )) && command -v dpkg-query >/dev/null; then
  if apt_lists_stale; then
    APT_STALE=1
    if [[ $(id -u) == 0 ]] || (( DRY_RUN )); then
      act "apt-get update (package lists are missing or older than a day)" apt-get update -qq
      (( DRY_RUN )) || APT_UPDATED=1
    else
      warn "apt package lists are missing or stale and we are not root: apt-get update skipped"
    fi
  fi
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    keep=()
    for p in "${missing[@]}"; do
      if (( DRY_RUN && APT_STALE )); then
        keep+=("$p")   # apt-cache cannot know before the update; the real run decides
      elif apt-cache show "$p" >/dev/null 2>&1; then
        keep+=("$p")
      elif [[ $p == python3-picamera2 || $p == python3-lgpio ]]; then
        warn "$p is not in this system's apt sources (not Raspberry Pi OS?): use camera.backend opencv / gpio.pin_factory as fits"
      else
        warn "$p not found by apt-cache (package lists refreshed: $APT_UPDATED); check /etc/apt/sources.list*"
      fi
    done
    missing=("${keep[@]}")
  fi
  if (( ${#missing[@]} )); then
    act "apt-get install ${missing[*]}" \
      env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  log "skipping apt (installing into $ROOT)"
fi

# ---------------------------------------------------------------- 2. user
if ! id -u "$SVC_USER" >/dev/null 2>&1; then
  if (( LIVE )); then
    act "create system user $SVC_USER" \
      useradd --system --user-group --home-dir /var/lib/doorbell --no-create-home \
              --shell /usr/sbin/nologin --comment "Doorbell services" "$SVC_USER"
  elif (( DRY_RUN )); then
    act "create system user $SVC_USER" true
  else
    die "user $SVC_USER does not exist; with --root pass --user of an existing account"
  fi
fi
if (( LIVE )); then
  for g in gpio video; do
    if ! getent group "$g" >/dev/null; then
      act "create group $g" groupadd --system "$g"
    fi
    if ! id -nG "$SVC_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then
      act "add $SVC_USER to group $g" usermod -aG "$g" "$SVC_USER"
    fi
  done
fi
SVC_GROUP=$(id -gn "$SVC_USER" 2>/dev/null || echo "$SVC_USER")

# ---------------------------------------------------------------- helpers
stat_of() { stat -c '%a %U %G' "$1" 2>/dev/null || true; }

# ensure_dir PATH MODE OWNER GROUP
ensure_dir() {
  local path=$1 mode=$2 owner=$3 group=$4
  if [[ ! -d "$path" ]]; then
    planned "$path" && return 0
    act "create $path ($mode $owner:$group)" install -d -m "$mode" -o "$owner" -g "$group" "$path"
    plan_dir "$path"
  elif [[ $(stat_of "$path") != "$mode $owner $group" ]]; then
    act "fix $path to $mode $owner:$group" sh -c 'chown "$2:$3" "$4" && chmod "$1" "$4"' _ "$mode" "$owner" "$group" "$path"
  fi
}

# Directories a dry run "created": it creates nothing, so without this list every file of
# a missing directory would announce the directory again (and the count would be wrong).
declare -A PLANNED_DIRS=()
planned() { [[ -n ${PLANNED_DIRS[$1]:-} ]]; }
plan_dir() {  # PATH and its parents (install -d makes them too)
  local d=$1
  while [[ -n "$d" && "$d" != / && "$d" != . ]]; do PLANNED_DIRS[$d]=1; d=$(dirname "$d"); done
}

# ensure_sysdir PATH: a system directory (/opt, /var/lib, ...) is created if missing, never changed
ensure_sysdir() {
  [[ -d "$1" ]] || planned "$1" || { act "create $1" install -d -m 755 -o root -g root "$1"; plan_dir "$1"; }
}

# ensure_file SRC DST MODE OWNER GROUP: copy if content differs, fix mode/owner if they differ
ensure_file() {
  local src=$1 dst=$2 mode=$3 owner=$4 group=$5
  if [[ ! -f "$dst" ]] || ! cmp -s "$src" "$dst"; then
    act "install $dst ($mode $owner:$group)" install -m "$mode" -o "$owner" -g "$group" "$src" "$dst"
    return 0
  elif [[ $(stat_of "$dst") != "$mode $owner $group" ]]; then
    act "fix $dst to $mode $owner:$group" sh -c 'chown "$2:$3" "$4" && chmod "$1" "$4"' _ "$mode" "$owner" "$group" "$dst"
    return 0
  fi
  return 1
}

# merge_bundle CURRENT BUNDLE: CURRENT with every key of BUNDLE laid over it (deep), on stdout.
merge_bundle() {
  PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" - "$1" "$2" <<'PY'
import sys, yaml
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
    return a
cur = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
new = yaml.safe_load(open(sys.argv[2], encoding="utf-8")) or {}
sys.stdout.write("# Your settings with the provisioned identity, broker and bucket keys laid over them\n"
                 "# by scripts/install-pi.sh --bundle (previous version: device.yaml.bak). Every key\n"
                 "# is documented in /opt/doorbell/src/config/device.yaml.\n")
sys.stdout.write(yaml.safe_dump(merge(cur, new), sort_keys=False))
PY
}

# ---------------------------------------------------------------- 3. code + venv
CODE_CHANGED=0
STAMP_FILE="$OPT/.installed"
ensure_sysdir "$(R /opt)"
ensure_dir "$OPT" 755 root root
# The source we install from, copied without .git/.venv/tests/node_modules so pip builds
# outside the checkout and /opt/doorbell/src/docs holds the matching docs.
SRC_FILES=$(cd "$SRC" && find setup.py README.md doorbell firmware cloud_agent sharing_service \
              config systemd scripts docs SECURITY.md -type f \
              ! -path "*/__pycache__/*" ! -path "*/node_modules/*" ! -name "*.pyc" 2>/dev/null | LC_ALL=C sort || true)
ensure_dir "$OPT/src" 755 root root
while IFS= read -r f; do
  [[ -z "$f" ]] && continue
  d="$OPT/src"; [[ $f == */* ]] && d="$OPT/src/${f%/*}"
  [[ -d "$d" ]] || planned "$d" || { act "create $d" install -d -m 755 -o root -g root "$d"; plan_dir "$d"; }
  m=644; [[ -x "$SRC/$f" ]] && m=755
  ensure_file "$SRC/$f" "$OPT/src/$f" "$m" root root && CODE_CHANGED=1
done <<< "$SRC_FILES"

if [[ ! -x "$VENV/bin/python" ]]; then
  act "create venv $VENV (--system-site-packages, for apt's picamera2)" \
    "$PYTHON" -m venv --system-site-packages "$VENV"
  CODE_CHANGED=1
fi
SPEC="$OPT/src"; [[ -n "$EXTRAS" ]] && SPEC="$OPT/src[$EXTRAS]"

# numpy: apt's picamera2 and its compiled helpers (python3-simplejpeg, python3-pidng, ...) are
# built against apt's numpy (1.24 on bookworm, 2.x on trixie). The venv sees it through
# --system-site-packages; a numpy pip adds to the venv would come first on sys.path and, if its
# major version differs, those helpers fail with "numpy.dtype size changed" (picamera2 #1088,
# #1211). So pip is held to apt's numpy, and on numpy 1.x to OpenCV < 4.12 (4.12 and later
# wheels require numpy >= 2; 4.11.0.86 is the last built for numpy 1.x).
CONSTRAINTS="$OPT/constraints.txt"
APT_NUMPY=$(PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -c '
import sys
try:
    import numpy
except Exception:
    sys.exit(0)
if numpy.__file__.startswith(("/usr/lib/python3/dist-packages/", "/usr/lib/python3.")):
    print(numpy.__version__)' 2>/dev/null || true)
PIP_CONSTRAINTS=()
FORCE_PIP=0
if [[ -n "$APT_NUMPY" ]]; then
  WANT_CONSTRAINTS="# Written by scripts/install-pi.sh: keep apt's numpy (python3-numpy $APT_NUMPY), which
# picamera2's compiled helpers were built against; never a second numpy in the venv.
numpy==$APT_NUMPY"
  if [[ $APT_NUMPY == 1.* ]]; then
    WANT_CONSTRAINTS+="
# the last OpenCV wheels built for numpy 1.x (4.12+ require numpy>=2)
opencv-python-headless<4.12
opencv-python<4.12"
  fi
  if [[ ! -f "$CONSTRAINTS" ]] || [[ $(cat "$CONSTRAINTS") != "$WANT_CONSTRAINTS" ]]; then
    act "write $CONSTRAINTS (numpy==$APT_NUMPY from apt)" sh -c 'printf "%s\n" "$1" > "$2"' _ "$WANT_CONSTRAINTS" "$CONSTRAINTS"
  fi
  PIP_CONSTRAINTS=(-c "$CONSTRAINTS")
  # A numpy an earlier install put into the venv itself shadows apt's: take it out.
  if [[ -x "$VENV/bin/python" ]]; then
    VENV_NUMPY=$(PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -c '
import numpy, sys
print(numpy.__version__ if numpy.__file__.startswith(sys.prefix) else "")' 2>/dev/null || true)
    if [[ -n "$VENV_NUMPY" ]]; then
      act "remove numpy $VENV_NUMPY from the venv (it shadows apt's numpy $APT_NUMPY)" \
        env PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip uninstall -y -q numpy
      FORCE_PIP=1  # pip must then check that the rest still resolves against apt's numpy
    fi
  fi
else
  WANT_CONSTRAINTS=""
fi
STAMP_WANT=$( { echo "extras=$EXTRAS pip=$PIP_OPTS constraints=$WANT_CONSTRAINTS"; (cd "$SRC" && echo "$SRC_FILES" | xargs -r sha256sum); } | sha256sum | cut -c1-32)
if (( FORCE_PIP )) || [[ ! -f "$STAMP_FILE" ]] || [[ $(cat "$STAMP_FILE") != "$STAMP_WANT" ]]; then
  # shellcheck disable=SC2086
  act "pip install $SPEC into $VENV" \
    env PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q $PIP_OPTS "${PIP_CONSTRAINTS[@]}" "$SPEC"
  act "record installed version in $STAMP_FILE" sh -c 'echo "$1" > "$2"' _ "$STAMP_WANT" "$STAMP_FILE"
  CODE_CHANGED=1
fi

# ---------------------------------------------------------------- 4. config + secrets
ensure_sysdir "$(R /etc)"
ensure_dir "$ETC" 750 root "$SVC_GROUP"
ensure_dir "$ETC/tls" 750 root "$SVC_GROUP"
CONFIG_CHANGED=0
if [[ -n "$BUNDLE" ]]; then
  if [[ -f "$ETC/device.yaml" && -x "$VENV/bin/python" ]] && ! cmp -s "$BUNDLE/device.yaml" "$ETC/device.yaml"; then
    # Keep the maker's own settings (pins, camera, masks...): the bundle's identity,
    # broker and bucket keys are laid over the existing file; a copy of it is kept.
    MERGED=$(mktemp)
    trap 'rm -f "$MERGED"' EXIT
    merge_bundle "$ETC/device.yaml" "$BUNDLE/device.yaml" > "$MERGED"
    if ! cmp -s "$MERGED" "$ETC/device.yaml"; then
      ensure_file "$ETC/device.yaml" "$ETC/device.yaml.bak" 600 "$SVC_USER" "$SVC_GROUP" || true
    fi
    ensure_file "$MERGED" "$ETC/device.yaml" 600 "$SVC_USER" "$SVC_GROUP" && CONFIG_CHANGED=1
  else
    ensure_file "$BUNDLE/device.yaml" "$ETC/device.yaml" 600 "$SVC_USER" "$SVC_GROUP" && CONFIG_CHANGED=1
  fi
  for f in ca.crt client.crt; do
    [[ -f "$BUNDLE/tls/$f" ]] && { ensure_file "$BUNDLE/tls/$f" "$ETC/tls/$f" 644 root root && CONFIG_CHANGED=1; }
  done
  [[ -f "$BUNDLE/tls/client.key" ]] && { ensure_file "$BUNDLE/tls/client.key" "$ETC/tls/client.key" 600 "$SVC_USER" "$SVC_GROUP" && CONFIG_CHANGED=1; }
  # the device's Ed25519 key that signs clip manifests (issue 12): the firmware's alone
  [[ -f "$BUNDLE/device_ed25519.pem" ]] && { ensure_file "$BUNDLE/device_ed25519.pem" "$ETC/device_ed25519.pem" 600 "$SVC_USER" "$SVC_GROUP" && CONFIG_CHANGED=1; }
elif [[ ! -f "$ETC/device.yaml" ]]; then
  # The commented default: valid, but without secrets the agent will not start.
  ensure_file "$SRC/config/device.yaml" "$ETC/device.yaml" 600 "$SVC_USER" "$SVC_GROUP" && CONFIG_CHANGED=1
else
  # Keep the operator's file; only make sure nobody else can read its secrets.
  [[ $(stat_of "$ETC/device.yaml") == "600 $SVC_USER $SVC_GROUP" ]] || \
    act "fix $ETC/device.yaml to 600 $SVC_USER:$SVC_GROUP" \
      sh -c 'chown "$1:$2" "$3" && chmod 600 "$3"' _ "$SVC_USER" "$SVC_GROUP" "$ETC/device.yaml"
fi

# ---------------------------------------------------------------- 5. spool / state
ensure_sysdir "$(R /var)"
ensure_sysdir "$(R /var/lib)"
ensure_dir "$STATE" 750 "$SVC_USER" "$SVC_GROUP"
ensure_dir "$STATE/spool" 750 "$SVC_USER" "$SVC_GROUP"
ensure_dir "$STATE/agent" 750 "$SVC_USER" "$SVC_GROUP"

# ---------------------------------------------------------------- validate
HAVE_CREDENTIALS=0
if [[ -x "$VENV/bin/python" && -f "$ETC/device.yaml" ]] && (( ! DRY_RUN )); then
  check() { PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m doorbell.cli config check -q -c "$ETC/device.yaml" "$@"; }
  check || die "$ETC/device.yaml is invalid (see above); fix it and run again"
  if check --require mqtt.password --require mqtt.username >/dev/null 2>&1; then
    HAVE_CREDENTIALS=1
  else
    warn "no broker credentials in $ETC/device.yaml: the agent stays off until you install a"
    warn "provisioned bundle (doorbell provision device ...; then $0 --bundle DIR)"
  fi
fi

# ---------------------------------------------------------------- 6. systemd
UNITS_CHANGED=0
ensure_sysdir "$(R /etc/systemd)"
ensure_sysdir "$UNIT_DIR"
for u in "${PI_UNITS[@]}"; do
  ensure_file "$SRC/systemd/$u" "$UNIT_DIR/$u" 644 root root && UNITS_CHANGED=1
done
SYSTEMD_UP=0; [[ -d /run/systemd/system ]] && SYSTEMD_UP=1   # sd_booted(3)
if (( LIVE )) && (( ! SYSTEMD_UP )); then
  warn "systemd is not running here (container/chroot?): units are enabled but not started"
fi
if command -v systemctl >/dev/null; then
  if (( LIVE && SYSTEMD_UP )) && (( UNITS_CHANGED )); then
    act "systemctl daemon-reload" systemctl daemon-reload
  fi
  want_enabled=(doorbell-firmware.service)
  if (( HAVE_CREDENTIALS )); then want_enabled+=(doorbell-agent.service); fi
  for u in "${want_enabled[@]}"; do
    if (( LIVE )); then
      systemctl is-enabled -q "$u" 2>/dev/null || act "systemctl enable $u" systemctl enable -q "$u"
    else
      systemctl --root="$ROOT" is-enabled -q "$u" 2>/dev/null || \
        act "systemctl --root=$ROOT enable $u" systemctl --root="$ROOT" enable -q "$u"
    fi
  done
  if (( LIVE && SYSTEMD_UP )) && (( START )); then
    for u in "${want_enabled[@]}"; do
      if ! systemctl is-active -q "$u" 2>/dev/null; then
        act "systemctl start $u" systemctl start "$u"
      elif (( CODE_CHANGED || CONFIG_CHANGED || UNITS_CHANGED )); then
        act "systemctl restart $u (new code or config)" systemctl restart "$u"
      fi
    done
  fi
else
  warn "systemctl not found: units copied to $UNIT_DIR but not enabled"
fi

# ---------------------------------------------------------------- summary
if (( CHANGES == 0 )); then
  log "nothing to do: already installed and up to date"
elif (( DRY_RUN )); then
  log "dry run: $CHANGES action(s) would be taken; nothing was changed"
else
  log "done: $CHANGES change(s)"
  if (( LIVE )); then
    log "check the installation with: sudo -u $SVC_USER $VENV/bin/doorbell doctor --config /etc/doorbell/device.yaml"
  fi
fi
exit 0
