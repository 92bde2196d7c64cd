#!/usr/bin/env bash
# Build target/debian/strongbox_<version>_<arch>.deb with dpkg-deb: the binary, a man page
# per command, bash/zsh/fish completions, an example /etc/strongbox/strongbox.toml (a
# conffile, root only), systemd template units (strongbox-{backup,verify,prune}@.service and
# .timer) and the docs.
#
#   scripts/package.sh                              # cargo build --release, then package
#   STRONGBOX_BINARY=path scripts/package.sh        # package that binary instead
#   PACKAGE_OUT=dir scripts/package.sh              # write the .deb there
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
if [ -z "${STRONGBOX_BINARY:-}" ]; then
    cargo build --release --locked -p strongbox
    bin=target/release/strongbox
else
    bin=$STRONGBOX_BINARY
fi
out=${PACKAGE_OUT:-target/debian}
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/strongbox
umask 022

# Stripped, as Debian ships binaries (debug builds are hundreds of MB of symbols).
install -D -s -m 0755 "$bin" "$root/usr/bin/strongbox"
"$bin" man "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"
"$bin" completions bash >"$root/usr/share/bash-completion/completions/strongbox"
"$bin" completions zsh >"$root/usr/share/zsh/vendor-completions/_strongbox"
"$bin" completions fish >"$root/usr/share/fish/vendor_completions.d/strongbox.fish"
install -D -m 0600 packaging/strongbox.toml "$root/etc/strongbox/strongbox.toml"
install -d "$root/lib/systemd/system"
install -m 0644 packaging/systemd/* "$root/lib/systemd/system/"
install -d "$root/usr/share/doc/strongbox"
install -m 0644 README.md docs/*.md "$root/usr/share/doc/strongbox/"
cat >"$root/usr/share/doc/strongbox/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: strongbox

Files: *
Copyright: strongbox developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

install -d "$root/DEBIAN"
echo /etc/strongbox/strongbox.toml >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/control" <<CONTROL
Package: strongbox
Version: $version
Architecture: $arch
Maintainer: strongbox developers <strongbox@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6
Recommends: postgresql-client, sqlite3, zstd, age
Section: admin
Priority: optional
Description: backups of media trees and databases you can restore at 3 a.m.
 strongbox backs up directory trees, PostgreSQL and SQLite to a local disk or
 S3-compatible storage: full, incremental and differential snapshots, SHA-256
 everywhere, retention, verification up to restore tests, health checks,
 alerts, schedules and encryption with age.
CONTROL

deb=$out/strongbox_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
