#!/usr/bin/env bash
# Install the doorbell into an arm64 Debian userland under qemu-user and check it runs,
# the way it would on a Raspberry Pi (no Pi needed; not part of the default test suite).
#
#   sudo scripts/pi-arm64-check.sh [--suite bookworm|trixie] [--keep] [--mirror URL]
#
# 1. Builds (once, cached in ~/.cache/doorbell, or $DOORBELL_ARM64_CACHE) an arm64 Debian root
#    with mmdebstrap, holding what Raspberry Pi OS has before our installer runs: python3, apt's
#    numpy (1.24 on bookworm, 2.x on trixie) and python3-pywt, a compiled apt package built
#    against that numpy. pywt stands in for picamera2's python3-simplejpeg (Raspberry Pi OS's
#    own archive is not needed): if pip puts another numpy major into the venv, it fails to
#    import with "numpy.dtype size changed", exactly as simplejpeg does.
# 2. Runs scripts/install-pi.sh inside it as root (apt, user, venv, pip install '.[pi]').
# 3. Checks: apt's numpy is the one the venv imports and pywt + cv2 load together;
#    `doorbell config check`; `doorbell doctor` (numpy OK, no stderr noise; camera, secrets,
#    broker... fail as they must without a Pi and a provisioned bundle); `doorbell firmware
#    simulate` on a short clip with a ring.
# 4. Breaks it on purpose: a numpy 2 pip-installed into the venv must make doctor report the
#    numpy ABI mismatch and pywt fail; a second install-pi.sh run must repair it.
#
# Needs root (chroot, binfmt), network (Debian mirror, PyPI) and about 2 GB. A cold run takes
# several minutes (the root build and pip under emulation); the root is reused afterwards.
# Installs mmdebstrap, qemu-user-static and binfmt-support with apt-get if missing.
#
# Options:
#   --suite S    Debian suite (default bookworm; trixie is Raspberry Pi OS 13's base)
#   --keep       keep the work directory (printed) for inspection
#   --mirror U   Debian mirror (default http://deb.debian.org/debian)
#   -h, --help
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
SUITE=bookworm
KEEP=0
MIRROR=http://deb.debian.org/debian
CACHE=${DOORBELL_ARM64_CACHE:-${HOME:-/root}/.cache/doorbell}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (( $# )); do
  case "$1" in
    --suite) SUITE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --mirror) MIRROR=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pi-arm64-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say()  { echo "[arm64-check] $*"; }
die()  { echo "[arm64-check] error: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (chroot and binfmt need it): sudo $0"

# ------------------------------------------------------------------ host tools
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[[ -x /usr/bin/qemu-aarch64-static ]] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if (( ${#need[@]} )); then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
fi

# ------------------------------------------------------------------ the arm64 root
# What a fresh Raspberry Pi OS Lite has that matters here, plus the numpy ABI stand-in.
PACKAGES=python3,python3-venv,python3-pip,python3-numpy,python3-pywt,ca-certificates,systemd,passwd,procps
KEY=$(echo "$SUITE $MIRROR $PACKAGES" | sha256sum | cut -c1-12)
TARBALL="$CACHE/arm64-$SUITE-$KEY.tar"
mkdir -p "$CACHE"
if [[ ! -s "$TARBALL" ]]; then
  say "building the arm64 $SUITE root (once; cached as $TARBALL)"
  t0=$SECONDS
  partial="$CACHE/.arm64-$SUITE-$KEY.partial.tar"   # mmdebstrap picks the format from the name
  mmdebstrap --quiet --arch=arm64 --variant=apt --include="$PACKAGES" "$SUITE" "$partial" "$MIRROR"
  mv "$partial" "$TARBALL"
  say "root built in $((SECONDS - t0)) s"
fi

WORK=$(mktemp -d /tmp/doorbell-arm64.XXXXXX)
ROOTFS="$WORK/root"
mkdir -p "$ROOTFS"
cleanup() {
  for m in dev/pts dev sys proc; do mountpoint -q "$ROOTFS/$m" && umount -l "$ROOTFS/$m"; done
  if (( KEEP )); then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
tar -C "$ROOTFS" -xf "$TARBALL"
mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# CAs this host trusts locally (a TLS-inspecting proxy's, a company CA) are trusted inside too,
# or pip cannot reach PyPI from the root on such a network.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || say "warning: update-ca-certificates failed"
fi

# The source as install-pi.sh would see it on the Pi (a clone without .git, venvs or caches).
mkdir -p "$ROOTFS/src/doorbell"
tar -C "$SRC" --exclude=.git --exclude=.venv --exclude=__pycache__ --exclude='*.pyc' \
    --exclude=.mypy_cache --exclude=.ruff_cache -cf - \
    setup.py README.md SECURITY.md doorbell firmware cloud_agent sharing_service config systemd scripts docs \
  | tar -C "$ROOTFS/src/doorbell" -xf -

cat > "$ROOTFS/src/check.sh" <<'EOF'
#!/bin/bash
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
PASS=0; FAIL=0
ok()   { echo "[arm64-check] PASS: $*"; PASS=$((PASS + 1)); }
bad()  { echo "[arm64-check] FAIL: $*"; FAIL=$((FAIL + 1)); }
step() { echo; echo "[arm64-check] ---- $*"; }
V=/opt/doorbell/venv/bin

step "platform: $(uname -m), $(. /etc/os-release; echo "$PRETTY_NAME"), $(python3 --version)"
python3 -c 'import numpy, pywt; print("apt numpy", numpy.__version__, "pywt", pywt.__version__)'

step "scripts/install-pi.sh"
t0=$SECONDS
if /src/doorbell/scripts/install-pi.sh --no-start; then ok "install-pi.sh ($((SECONDS - t0)) s)"; else bad "install-pi.sh exited $?"; fi

step "one numpy: apt's, and apt's compiled stand-in (pywt) loads next to OpenCV"
$V/python -c '
import numpy, cv2, pywt
print("numpy", numpy.__version__, numpy.__file__)
print("cv2", cv2.__version__, "pywt", pywt.__version__)
assert numpy.__file__.startswith("/usr/lib/python3/dist-packages/"), "the venv shadows apt numpy"
' && ok "numpy from apt, pywt and cv2 import together" || bad "numpy/pywt/cv2 do not load together"
cat /opt/doorbell/constraints.txt 2>/dev/null | sed 's/^/    constraints: /'

step "doorbell config check"
$V/doorbell config check -q -c /etc/doorbell/device.yaml && ok "config check" || bad "config check"

step "doorbell doctor (no Pi hardware, no bundle: camera, gpio, secrets fail by design)"
runuser -u doorbell -- $V/doorbell doctor -c /etc/doorbell/device.yaml --skip broker --skip bucket \
  > /tmp/doctor.out 2> /tmp/doctor.err
cat /tmp/doctor.out
grep -q '^\[ OK \] numpy' /tmp/doctor.out && ok "doctor: numpy OK" || bad "doctor: numpy not OK"
if [[ -s /tmp/doctor.err ]]; then bad "doctor wrote to stderr:"; sed 's/^/    /' /tmp/doctor.err; else ok "doctor: stderr empty"; fi
grep -q 'ribbon' /tmp/doctor.out && bad "doctor blames the ribbon cable" || ok "doctor does not blame the ribbon cable"

step "doorbell firmware simulate (a 4 s clip, one ring)"
$V/python -c 'from pathlib import Path; from doorbell.sandbox.media import make_mp4; make_mp4(Path("/tmp/clip.mp4"), frames=60)'
if $V/doorbell firmware simulate --video /tmp/clip.mp4 --ring-at 1 --spool /tmp/sim-spool --fast \
     > /tmp/sim.out 2> /tmp/sim.err && grep -q '"clip_id"' /tmp/sim.out; then
  ok "firmware simulate produced: $(head -c 200 /tmp/sim.out)"
else
  bad "firmware simulate"; tail -20 /tmp/sim.err
fi

step "break it: pip puts numpy 2 into the venv (what the unpinned 'pi' extra used to do)"
if [[ $(python3 -c 'import numpy; print(numpy.__version__[0])') == 1 ]]; then
  $V/python -m pip install -q --disable-pip-version-check 'numpy>=2,<2.3' 2>&1 | tail -2
  $V/python -c 'import pywt' 2> /tmp/pywt.err && bad "pywt still imports under numpy 2?" || \
    { grep -m1 -o 'numpy.dtype size changed[^.]*' /tmp/pywt.err | sed 's/^/    /'; ok "the stand-in fails as simplejpeg does"; }
  runuser -u doorbell -- $V/doorbell doctor -c /etc/doorbell/device.yaml --skip broker --skip bucket > /tmp/doctor2.out 2>&1
  grep '\] numpy' -A1 /tmp/doctor2.out
  grep -q '^\[FAIL\] numpy .*numpy ABI mismatch' /tmp/doctor2.out && ok "doctor names the numpy ABI mismatch" \
    || bad "doctor did not name the numpy ABI mismatch"
  step "repair: install-pi.sh again"
  /src/doorbell/scripts/install-pi.sh --no-start | grep -E 'numpy|pip install|done|nothing' | sed 's/^/    /'
  $V/python -c 'import numpy, pywt, cv2; assert numpy.__file__.startswith("/usr/lib/python3/")' \
    && ok "install-pi.sh removed the venv's numpy; pywt and cv2 load again" || bad "repair failed"
else
  echo "    (apt's numpy is 2.x on this suite: the clash to provoke would be numpy 1 in the venv; skipped)"
fi

step "a second install-pi.sh run changes nothing"
/src/doorbell/scripts/install-pi.sh --no-start > /tmp/again.out 2>&1
grep -q 'nothing to do' /tmp/again.out && ok "idempotent" || { bad "second run changed things"; cat /tmp/again.out; }

echo
echo "[arm64-check] summary: $PASS passed, $FAIL failed"
exit $(( FAIL > 0 ))
EOF
chmod +x "$ROOTFS/src/check.sh"

say "running the checks in the arm64 root ($ROOTFS)"
t0=$SECONDS
rc=0
# A clean environment, as on the Pi (the host's pip settings, venv and paths do not leak in);
# only proxy settings pass through.
keep_env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n ${!v:-} ]] && keep_env+=("$v=${!v}")
done
env -i "${keep_env[@]}" chroot "$ROOTFS" /src/check.sh || rc=$?
say "finished in $((SECONDS - t0)) s with exit status $rc"
exit "$rc"
