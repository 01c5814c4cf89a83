#!/usr/bin/env bash
# `make microvm`: the microVM guest (kernel, root filesystem with the agent) from Debian's and
# npm's registries, cached by content hash, in $TOOLS/microvm/guest-<hash>/ with
# $TOOLS/microvm/current pointing at it. Usage: BUN_VERSION=x.y.z [TOOLS=.tools] build.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
bun_version=${BUN_VERSION:?BUN_VERSION is needed (the Makefile sets it)}
out_root=${TOOLS:-.tools}/microvm
cache=$out_root/cache
mkdir -p "$cache"
started=$(date +%s.%N)

need_root() {
  [ "$(id -u)" = 0 ] || { echo "microvm: $1 needs root (run make microvm as root)" >&2; exit 1; }
}

# --- Debian packages, installed as root when missing -------------------------------------
system_packages() {
  local missing=() pkg
  for pkg in qemu-system-x86 debootstrap linux-source-6.1 flex bison bc libelf-dev e2fsprogs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  command -v npm >/dev/null || { echo "microvm: npm is needed to fetch Bun: apt-get install nodejs npm" >&2; exit 1; }
  [ ${#missing[@]} = 0 ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "microvm: missing Debian packages: ${missing[*]} (install them as root)" >&2
    exit 1
  fi
  echo "microvm: installing ${missing[*]}"
  local plain=() qemu=""
  for pkg in "${missing[@]}"; do
    if [ "$pkg" = qemu-system-x86 ]; then qemu=1; else plain+=("$pkg"); fi
  done
  apt-get update -qq
  [ ${#plain[@]} = 0 ] || apt-get install -y -qq "${plain[@]}"
  if [ -n "$qemu" ]; then
    # qemu-utils from bookworm-backports (as on the project's machines) conflicts with
    # bookworm's qemu-system-x86: take it from bookworm-backports, on the machine's mirror.
    if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo12; then
      if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        local mirror
        mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '$2 !~ /security/ {print $2; exit}')
        mirror=${mirror:-$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
        mirror=${mirror:-http://deb.debian.org/debian}
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
          "$mirror" > /etc/apt/sources.list.d/bookworm-backports.sources
        apt-get update -qq
      fi
      apt-get install -y -qq -t bookworm-backports qemu-system-x86
    else
      apt-get install -y -qq qemu-system-x86
    fi
  fi
}
system_packages

sha() { sha256sum | cut -c1-16; }

# --- The kernel ---------------------------------------------------------------------------
linux_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
kernel_key=$({ cat microvm/kernel.config microvm/build-kernel.sh; echo "linux-source-6.1 $linux_version"; } | sha)
kernel_dir=$cache/kernel-$kernel_key
if [ ! -f "$kernel_dir/vmlinux" ]; then
  bash microvm/build-kernel.sh "$kernel_dir"
fi

# --- The base tree ------------------------------------------------------------------------
packages=$(grep '^packages=' microvm/build-rootfs.sh)
base_key=$({ cat microvm/build-rootfs.sh; echo "$packages"; echo "bun $bun_version"; } | sha)
base_dir=$cache/base-$base_key
if [ ! -x "$base_dir/usr/local/bin/bun" ]; then
  need_root "debootstrap"
  bash microvm/build-rootfs.sh "$base_dir" "$bun_version"
fi

# --- The agent (static, in its own target folder) -----------------------------------------
echo "microvm: cargo build --release -p ignis-guest (static)"
# Stripped: the guest needs no debug information (the image is smaller).
CARGO_TARGET_DIR=target/guest RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --quiet --release --locked -p ignis-guest --target x86_64-unknown-linux-gnu
agent=target/guest/x86_64-unknown-linux-gnu/release/ignis-agent
if readelf -l "$agent" | grep -q INTERP; then
  echo "microvm: $agent is not static (it names a program interpreter)" >&2
  exit 1
fi

# --- The image ----------------------------------------------------------------------------
hash=$({ echo "kernel $kernel_key base $base_key"; sha256sum "$agent" | cut -d' ' -f1; cat microvm/build.sh; } | sha)
guest=$out_root/guest-$hash
if [ ! -f "$guest/guest.json" ]; then
  need_root "the root filesystem image (files owned by root)"
  stage=$guest.tmp
  rm -rf "$stage"
  mkdir -p "$stage"
  # Hard links: the staged tree costs no copy of the base tree; the agent is a new file.
  cp -al "$base_dir" "$stage/tree"
  install -m 0755 "$agent" "$stage/tree/usr/sbin/ignis-agent"
  [ -x "$stage/tree/sbin/ignis-agent" ] || { echo "microvm: /sbin/ignis-agent missing in the tree" >&2; exit 1; }
  used_mb=$(du -sm "$stage/tree" | cut -f1)
  files=$(find "$stage/tree" | wc -l)
  size_mb=$(( used_mb + used_mb / 8 + 16 ))
  mke2fs -q -t ext4 -O ^has_journal -m 0 -b 4096 -N $(( files + files / 4 + 1024 )) -L ignis-root \
    -d "$stage/tree" "$stage/rootfs.ext4" "${size_mb}M" >/dev/null
  e2fsck -fn "$stage/rootfs.ext4" >/dev/null 2>&1 || { echo "microvm: e2fsck found errors in the new image" >&2; exit 1; }
  cp "$kernel_dir/vmlinux" "$stage/vmlinux"
  kernel=$(cat "$kernel_dir/kernelrelease")
  python=$(chroot "$stage/tree" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
  bun=$("$stage/tree/usr/local/bin/bun" --version)
  printf '{"kernel":"%s","python":"%s","bun":"%s","hash":"%s"}\n' "$kernel" "$python" "$bun" "$hash" > "$stage/guest.json"
  rm -rf "$stage/tree"
  rm -rf "$guest"
  mv "$stage" "$guest"
fi

# --- current → this guest (atomically); older guests and cache entries go ----------------
ln -sfn "guest-$hash" "$out_root/current.new"
mv -T "$out_root/current.new" "$out_root/current"
for old in "$out_root"/guest-*; do
  [ "$old" = "$guest" ] || rm -rf "$old"
done
for old in "$cache"/kernel-* "$cache"/base-*; do
  [ -e "$old" ] || continue
  [ "$old" = "$kernel_dir" ] || [ "$old" = "$base_dir" ] || rm -rf "$old"
done
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
echo "microvm: $(cat "$guest/guest.json")"
echo "microvm: $out_root/current -> guest-$hash (vmlinux $(du -h --apparent-size "$guest/vmlinux" | cut -f1), rootfs.ext4 $(du -h --apparent-size "$guest/rootfs.ext4" | cut -f1)) in ${elapsed}s"
