#!/usr/bin/env bash
# Assembles trailguard's container image without a Docker engine, as an OCI image layout, with
# umoci (Debian package). Same contents as the Dockerfile's final stage:
#   /trailguard, /etc/trailguard/trailguard.toml, CA certificates, /etc/passwd with nonroot
#   (65532), /var/lib/trailguard owned by 65532; user 65532, exec-form entrypoint, port 9464.
# The binary: the toolchain here has no musl target (rustup cannot download it here), so the
# release glibc binary is shipped with the exact shared libraries it links (as distroless/cc
# does); with the musl target installed, set TRAILGUARD_MUSL=1 for a fully static binary.
#   deploy/container/build-image.sh OUT_DIR   → OUT_DIR/oci (image layout), tag trailguard:VERSION
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(realpath -m "${1:-$root/target/image}")"
cd "$root"
command -v umoci >/dev/null || { echo "build-image: umoci not found (apt-get install umoci)" >&2; exit 1; }
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
if [ "${TRAILGUARD_MUSL:-0}" = 1 ]; then
  cargo build --release --locked --target x86_64-unknown-linux-musl -p trailguard
  bin="$target_dir/x86_64-unknown-linux-musl/release/trailguard"
else
  cargo build --release --locked -p trailguard
  bin="$target_dir/release/trailguard"
fi
version="$("$bin" --version | awk '{print $2}')"
rm -rf "$out"; mkdir -p "$out"
umoci init --layout "$out/oci"
umoci new --image "$out/oci:trailguard"
umoci unpack --image "$out/oci:trailguard" "$out/bundle"
rootfs="$out/bundle/rootfs"
install -D -m 0755 "$bin" "$rootfs/trailguard"
if [ "${TRAILGUARD_MUSL:-0}" != 1 ]; then
  # The dynamic loader and every library the binary links, at the same paths.
  for lib in $(ldd "$bin" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
fi
install -D -m 0644 deploy/container/trailguard.toml "$rootfs/etc/trailguard/trailguard.toml"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
install -d -m 0700 -o 65532 -g 65532 "$rootfs/var/lib/trailguard"
umoci repack --image "$out/oci:trailguard" "$out/bundle"
umoci config --image "$out/oci:trailguard" --tag "$version" \
  --config.user 65532:65532 \
  --config.entrypoint /trailguard --config.entrypoint run --config.entrypoint --config --config.entrypoint /etc/trailguard/trailguard.toml \
  --config.env TRAILGUARD__STATE__DIR=/var/lib/trailguard \
  --config.env TRAILGUARD__SERVER__LISTEN=0.0.0.0:9464 \
  --config.env TRAILGUARD__LOG__FORMAT=json \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.exposedports 9464/tcp \
  --config.volume /var/lib/trailguard \
  --config.workingdir / \
  --clear=config.cmd
umoci gc --layout "$out/oci"
rm -rf "$out/bundle"
echo "build-image: $out/oci:$version"
