#!/usr/bin/env bash
# The guest's base tree (without the agent): Debian bookworm minbase with CPython and the CA
# certificates, Bun (the npm package @oven/bun-linux-x64-baseline) at /usr/local/bin/bun, the
# user `ignis` (1000:1000), DNS through QEMU's user network, apt caches and docs removed.
# Usage (as root): build-rootfs.sh OUT_TREE BUN_VERSION
set -euo pipefail

out=$(realpath -m "$1")
bun_version=$2
# The package list (part of the cache key through this script's own hash).
packages=python3,ca-certificates

# The machine's own Debian mirror, from its apt sources; deb.debian.org otherwise.
mirror() {
  local uri
  uri=$(grep -hs -A3 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {u=$2} /^Suites:.*\<bookworm\>/ && u != "" && u !~ /security/ {print u; exit}')
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $3 == "bookworm" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

work="$out.tmp"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
tree=$work/tree
src=$(mirror)
echo "rootfs: debootstrap --variant=minbase --include=$packages bookworm from $src"
debootstrap --variant=minbase --include="$packages" bookworm "$tree" "$src" > "$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; echo "rootfs: debootstrap failed" >&2; exit 1; }

echo "rootfs: bun $bun_version (npm @oven/bun-linux-x64-baseline)"
mkdir -p "$work/npm"
(cd "$work/npm" && npm pack --silent --loglevel=error "@oven/bun-linux-x64-baseline@$bun_version" >/dev/null)
tar -xzf "$work"/npm/*.tgz -C "$work/npm"
install -D -m 0755 "$work/npm/package/bin/bun" "$tree/usr/local/bin/bun"

echo "nameserver 10.0.2.3" > "$tree/etc/resolv.conf"
echo "ignis" > "$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$tree/etc/hosts"
grep -q '^ignis:' "$tree/etc/passwd" || echo "ignis:x:1000:1000:ignis:/nonexistent:/usr/sbin/nologin" >> "$tree/etc/passwd"
grep -q '^ignis:' "$tree/etc/group" || echo "ignis:x:1000:" >> "$tree/etc/group"
grep -q '^ignis:' "$tree/etc/shadow" || echo "ignis:*:19000:0:99999:7:::" >> "$tree/etc/shadow"
for dir in code opt ignis run tmp; do
  rm -rf "${tree:?}/$dir"
  mkdir -m 0755 "$tree/$dir"
done
chmod 1777 "$tree/tmp"

# Smaller: no apt caches or lists, no documentation, no translations of messages.
rm -rf "$tree"/var/cache/apt/* "$tree"/var/lib/apt/lists/* "$tree"/var/cache/debconf/*-old \
  "$tree"/usr/share/doc/* "$tree"/usr/share/man/* "$tree"/usr/share/info/* "$tree"/usr/share/locale/* \
  "$tree"/var/log/* "$tree"/debootstrap

rm -rf "$out"
mv "$tree" "$out"
echo "rootfs: base tree in $out ($(du -sh "$out" | cut -f1))"
