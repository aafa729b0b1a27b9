#!/bin/sh
# Make Debian's nix-bin usable as root, single-user and offline (for the nix backend's tests).
#
# Idempotent: run it as often as you like. What it does and why:
#  - installs nix-bin when `nix-build` is missing;
#  - sets, in /etc/nix/nix.conf, only the keys nixvmd relies on (other lines are kept):
#      sandbox = false             the sandbox does not work on Debian's build
#      build-users-group =         root builds as itself; no nixbld users needed
#      experimental-features = nix-command flakes
#      substituters =              nothing to fetch from: each nix call would
#                                  otherwise retry cache.nixos.org for ~5 s
#      flake-registry = <local>    an empty registry file, so flakes never try to
#                                  download the global one
#  - creates the directories systemd-tmpfiles would make (there may be no systemd);
#  - proves it works: `nix-store --version` and a build of a trivial derivation.
# No nix-daemon is needed: root talks to the local store directly.
set -eu

conf_dir=/etc/nix
conf=$conf_dir/nix.conf
registry=$conf_dir/nixvmd-empty-registry.json

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-nix.sh: run me as root (single-user Nix writes /nix and /etc/nix)" >&2
    exit 1
fi

if ! command -v nix-build >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y nix-bin || { apt-get update && apt-get install -y nix-bin; }
fi

mkdir -p "$conf_dir" /nix/store /nix/var/nix/gcroots/per-user /nix/var/nix/profiles/per-user
chmod 1777 /nix/var/nix/gcroots/per-user /nix/var/nix/profiles/per-user
touch "$conf"

if [ ! -s "$registry" ]; then
    printf '{"flakes": [], "version": 2}\n' >"$registry"
fi

# set_key KEY VALUE: replace every `KEY = ...` line, or append one.
set_key() {
    key=$1
    value=$2
    tmp=$(mktemp "$conf.XXXXXX")
    awk -v key="$key" -v line="$key = $value" '
        BEGIN { done = 0 }
        {
            probe = $0
            sub(/^[ \t]+/, "", probe)
            if (index(probe, key) == 1 && substr(probe, length(key) + 1) ~ /^[ \t]*=/) {
                if (!done) { print line; done = 1 }
                next
            }
            print
        }
        END { if (!done) print line }
    ' "$conf" >"$tmp"
    chmod 644 "$tmp"
    mv "$tmp" "$conf"
}

set_key sandbox false
set_key build-users-group ""
set_key experimental-features "nix-command flakes"
set_key substituters ""
set_key flake-registry "$registry"

nix-store --version

probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
cat >"$probe_dir/probe.nix" <<'EOF'
derivation {
  name = "nixvmd-setup-probe";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "echo ok > $out" ];
}
EOF
out=$(nix-build "$probe_dir/probe.nix" --no-out-link)
if [ "$(cat "$out")" != ok ]; then
    echo "setup-nix.sh: the probe derivation built but its output is wrong: $out" >&2
    exit 1
fi
echo "setup-nix.sh: nix works ($out)"
