#!/usr/bin/env bash
# The guest kernel: Debian's linux-source-6.1, `make tinyconfig`, microvm/kernel.config merged,
# every `=y` of the fragment checked, `make vmlinux`. Usage: build-kernel.sh OUT_DIR
# (writes OUT_DIR/vmlinux and OUT_DIR/kernelrelease; the build tree is removed afterwards).
set -euo pipefail

out=$(realpath -m "$1")
here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/kernel.config
tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || { echo "missing $tarball: apt-get install linux-source-6.1" >&2; exit 1; }

work="$out.tmp"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
echo "kernel: extracting $tarball"
tar -xf "$tarball" -C "$work" --exclude='linux-source-6.1/Documentation/*/*'
cd "$work/linux-source-6.1"
make -s ARCH=x86_64 tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig

lost=""
while IFS= read -r line; do
  name=${line%%=*}
  grep -qx "$name=y" .config || lost="$lost ${name#CONFIG_}"
done < <(grep -E '^CONFIG_[A-Za-z0-9_]+=y$' "$fragment")
if [ -n "$lost" ]; then
  echo "kernel: these options of $fragment did not survive olddefconfig:$lost" >&2
  exit 1
fi

echo "kernel: make -j$(nproc) vmlinux"
make -s ARCH=x86_64 -j"$(nproc)" vmlinux
mkdir -p "$out"
cp vmlinux "$out/vmlinux.new"
cp .config "$out/config"
make -s ARCH=x86_64 kernelrelease > "$out/kernelrelease"
mv "$out/vmlinux.new" "$out/vmlinux"
echo "kernel: $(cat "$out/kernelrelease") in $out/vmlinux ($(du -h --apparent-size "$out/vmlinux" | cut -f1))"
