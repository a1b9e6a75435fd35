#!/usr/bin/env bash
# Build smtpc, run its tests and print its footprint on aarch64, without a
# board: a Debian arm64 root made with debootstrap, run under qemu-user.
# Not part of .ci/run (emulation is slow); run it by hand, as root, on a
# Debian x86-64 machine:
#
#   ci/arm64.sh                        # whole suite, then footprint JSON
#   SMTPC_OPTIMIZE_SIZE=1 ci/arm64.sh  # the same with the core built for size
#
# Environment:
#   SMTPC_ARM64_CACHE   keeps the finished root and each built extension
#                       (default /var/cache/smtpc-arm64): a second run
#                       downloads and compiles nothing.
#   SMTPC_ARM64_TESTS   pytest arguments (default: the whole suite).
#   SMTPC_ARM64_TWIN=1  also run those tests with SMTPC_NO_EXTENSIONS=1.
#   SMTPC_ARM64_OUT     file for `smtpc footprint --json` (default: stdout).
#   SMTPC_ARM64_SPEED=1 print DataEncoder.encode MB/s on 10 MB of text.
#
# If the kernel has a binfmt_misc entry for aarch64, the root is a normal
# chroot. Otherwise aarch64 programs are started through the emulator
# explicitly, and as the kernel cannot start one, no aarch64 program may exec
# another: debootstrap's second stage becomes unpacking the fetched packages
# (no maintainer scripts run), python3 is found first as a small static x86-64
# program that starts the root's python3 under the emulator (so
# sys.executable children work), and gcc runs its passes through the emulator
# (-wrapper) and links with ld in collect2's place.
# Tests reach only loopback: the root shares the host's network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

cache=${SMTPC_ARM64_CACHE:-/var/cache/smtpc-arm64}
root=$cache/root
emulator=/usr/bin/qemu-aarch64-static
binfmt=/proc/sys/fs/binfmt_misc/qemu-aarch64
packages=python3,python3-dev,python3-pip,python3-venv,python3-setuptools
packages+=,gcc,libc6-dev,ca-certificates
# The test and dns extras, as wheels only: in direct mode an sdist's build
# would start gcc without the emulator, and wheels keep the two roots alike.
requirements=(
    "Cython>=3.0" "pytest>=8" "hypothesis>=6.80" "psutil>=5.9"
    "aiosmtpd>=1.4.4" "trustme>=1.1" "dnspython>=2.4"
)
# A root made with another package list or requirement set is rebuilt.
stamp="v1 $packages ${requirements[*]}"

log() { printf '=== %s\n' "$*" >&2; }

if [[ $(id -u) != 0 ]]; then
    echo "ci/arm64.sh: run as root (debootstrap, chroot, mount)" >&2
    exit 2
fi
for tool in debootstrap "$emulator"; do
    if ! command -v "$tool" >/dev/null; then
        echo "ci/arm64.sh: missing $tool: apt-get install -y" \
            "debootstrap qemu-user-static" >&2
        exit 2
    fi
done

if [[ -r $binfmt ]] && grep -qx enabled "$binfmt"; then
    mode=binfmt
else
    mode=direct
fi
log "aarch64 programs run by: $mode"

# The Debian mirror is the one apt is configured with on this machine.
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
mirror=$(apt-get indextargets --format '$(REPO_URI) $(CODENAME) $(TARGET_OF)' \
    'Identifier: Packages' | awk -v c="$codename" '$2 == c && $3 == "deb" {
        print $1; exit }')
if [[ -z $mirror ]]; then
    echo "ci/arm64.sh: no '$codename' source in apt's configuration" >&2
    exit 2
fi

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" || umount -l "${mounted[i]}" || true
    done
}
trap cleanup EXIT

mount_into_root() {
    mount "$@"
    mounted+=("${!#}")
}

# Runs a command in the root, in /src, with a clean environment.
in_root() {
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        PYTHONDONTWRITEBYTECODE=1 "${extra_env[@]}" \
        unshare --root="$root" --wd=/src "$@"
}
extra_env=()

# Direct mode's python3: starts the root's python3 under the emulator, with
# its own path as argv[0], so that sys.executable names it too.
install_python_launcher() {
    local c=$cache/python3-launcher.c
    cat >"$c" <<EOF
#include <unistd.h>

int main(int argc, char **argv)
{
    char *args[argc + 4];
    int n = 0;

    args[n++] = "qemu-aarch64-static";
    args[n++] = "-0";
    args[n++] = "/usr/local/bin/python3";
    args[n++] = "/usr/bin/python3";
    for (int i = 1; i <= argc; i++)
        args[n++] = argv[i];
    execv("$emulator", args);
    return 127;
}
EOF
    mkdir -p "$1/usr/local/bin"
    gcc -static -Os -o "$1/usr/local/bin/python3" "$c"
}

make_root() {
    local work=$cache/root.new deb
    rm -rf "$work"
    mkdir -p "$cache"
    log "debootstrap first stage: arm64 $codename from $mirror"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include="$packages" "$codename" "$work" "$mirror"
    install -m 0755 "$emulator" "$work$emulator"

    if [[ $mode == binfmt ]]; then
        log "debootstrap second stage (emulated)"
        chroot "$work" /debootstrap/debootstrap --second-stage
    else
        # No aarch64 program may start another here, so the maintainer
        # scripts cannot run: unpack every package debootstrap fetched.
        log "unpacking $(ls "$work"/var/cache/apt/archives/*.deb | wc -l) packages"
        for deb in "$work"/var/cache/apt/archives/*.deb; do
            dpkg-deb -x "$deb" "$work"
        done
        rm -f "$work"/var/cache/apt/archives/*.deb
        install_python_launcher "$work"
        cp "$work/usr/share/base-passwd/passwd.master" "$work/etc/passwd"
        cp "$work/usr/share/base-passwd/group.master" "$work/etc/group"
    fi
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n' \
        >"$work/etc/hosts"
    cp /etc/resolv.conf "$work/etc/resolv.conf"
    # pip trusts what this machine trusts (it may add a local CA).
    cp /etc/ssl/certs/ca-certificates.crt "$work/etc/ssl/certs/"
    mkdir -p "$work/src"

    log "pip install (wheels only): ${requirements[*]}"
    local old_root=$root
    root=$work
    in_root python3 -m pip install --quiet --no-cache-dir \
        --break-system-packages --root-user-action=ignore \
        --only-binary=:all: "${requirements[@]}"
    root=$old_root

    # Tests may reach only loopback: no name server in the finished root.
    rm -f "$work/etc/resolv.conf"
    echo "$stamp" >"$work/.smtpc-arm64-stamp"
    rm -rf "$root"
    mv "$work" "$root"
}

if [[ ! -f $root/.smtpc-arm64-stamp ]] ||
    [[ $(cat "$root/.smtpc-arm64-stamp") != "$stamp" ]]; then
    make_root
else
    log "reusing the root in $root"
fi

mount_into_root -t proc proc "$root/proc"
mount_into_root --bind /dev "$root/dev"
mount_into_root -t tmpfs tmpfs "$root/tmp"

# A fresh copy of the source, without the host's build products.
rm -rf "$root/src"
mkdir -p "$root/src"
tar -C "$src" --exclude=./.git --exclude=./build --exclude='*.so' \
    --exclude=./smtpc/_core.c --exclude='__pycache__' -cf - . |
    tar -C "$root/src" -xf -

# Built extensions are kept by the hash of what they are built from.
size=${SMTPC_OPTIMIZE_SIZE:-0}
key=$( (cat setup.py smtpc/_core.pyx smtpc/_core.pxd; echo "Os=$size $mode") |
    sha256sum | cut -c1-16)
so=_core.cpython-311-aarch64-linux-gnu.so
if [[ -f $cache/ext/$key/$so ]]; then
    log "reusing the extension built from $key"
    cp "$cache/ext/$key/$so" "$root/src/smtpc/$so"
else
    log "building the extension (SMTPC_OPTIMIZE_SIZE=$size)"
    extra_env=(SMTPC_OPTIMIZE_SIZE="$size")
    if [[ $mode == direct ]]; then
        # gcc runs cc1, as and the linker (found in /usr/bin) through the
        # emulator; ld takes collect2's place, which would start ld itself.
        printf '*linker:\nld\n\n' >"$root/tmp/no-collect2.specs"
        gcc="$emulator /usr/bin/aarch64-linux-gnu-gcc -B/usr/bin/"
        gcc+=" -wrapper $emulator"
        extra_env+=(
            "CC=$gcc"
            "LDSHARED=$gcc -specs=/tmp/no-collect2.specs -shared"
        )
    fi
    time in_root python3 setup.py --quiet build_ext --inplace
    extra_env=()
    mkdir -p "$cache/ext/$key"
    cp "$root/src/smtpc/$so" "$cache/ext/$key/$so"
fi
in_root python3 -c \
    "import smtpc.core as c; assert c.IMPLEMENTATION == 'c', c.IMPLEMENTATION"
in_root python3 -c "import platform; print(platform.machine())"

read -r -a tests <<<"${SMTPC_ARM64_TESTS:-}"
# A failed test run still gives the footprint; the exit status says it failed.
failed=0
log "pytest ${tests[*]} (compiled core)"
time in_root python3 -m pytest -q "${tests[@]}" || failed=1
if [[ ${SMTPC_ARM64_TWIN:-0} == 1 ]]; then
    log "pytest ${tests[*]} (SMTPC_NO_EXTENSIONS=1)"
    extra_env=(SMTPC_NO_EXTENSIONS=1)
    time in_root python3 -m pytest -q "${tests[@]}" || failed=1
    extra_env=()
fi

if [[ ${SMTPC_ARM64_SPEED:-0} == 1 ]]; then
    extra_env=(PYTHONPATH=/src)
    in_root python3 bench/encode_speed.py 3
    extra_env=()
fi

log "smtpc footprint --json"
if [[ -n ${SMTPC_ARM64_OUT:-} ]]; then
    in_root python3 -m smtpc footprint --json >"$SMTPC_ARM64_OUT"
    cat "$SMTPC_ARM64_OUT"
else
    in_root python3 -m smtpc footprint --json
fi
if ((failed)); then
    log "tests failed on aarch64"
    exit 1
fi
