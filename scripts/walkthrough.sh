#!/usr/bin/env bash
# A short scripted walk through the `tds` verbs that exist so far: keys, a data-space
# authority, a membership credential, verification, revocation and inspection.
#
#   scripts/walkthrough.sh            # builds tds (release) and runs in a temporary dir
#   TDS=/path/to/tds scripts/walkthrough.sh
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${TDS:-}" ]]; then
    cargo build --quiet --release --locked -p tds-node --manifest-path "$here/Cargo.toml"
    TDS="$here/target/release/tds"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A grid operator makes its participant key"
"$TDS" key new --out grid.key
grid_pub="$("$TDS" key show grid.key | sed -n 's/.*"public_key_hex": *"\([0-9a-f]*\)".*/\1/p')"

step "The provincial data-space authority is set up"
"$TDS" authority init --home authority --name "Shanxi Energy Data Space"

step "The authority admits the grid operator as a power-sector provider in CN-SX"
"$TDS" authority admit --home authority --subject-key "$grid_pub" --name "State Grid Shanxi" \
    --sector power --role provider,consumer --jurisdiction CN-SX --days 365 --out grid.cred
auth_pub="$("$TDS" authority show --home authority | sed -n 's/.*"public_key_hex": *"\([0-9a-f]*\)".*/\1/p')"

step "Anyone holding the authority's public key verifies the credential"
"$TDS" credential verify grid.cred --authority-key "$auth_pub"

step "A reviewer inspects the signed object"
"$TDS" inspect grid.cred

step "The authority revokes serial 1 and publishes its revocation list"
"$TDS" authority revoke --home authority --serial 1
"$TDS" authority crl --home authority --out current.crl
"$TDS" inspect current.crl

step "With the revocation list, verification now fails (as it must)"
if "$TDS" credential verify grid.cred --authority-key "$auth_pub" --crl current.crl; then
    echo "unexpected: a revoked credential verified" >&2
    exit 1
fi

step "A corrupted credential is refused with one clear line"
cp grid.cred bad.cred
printf '\x00' | dd of=bad.cred bs=1 seek=40 conv=notrunc status=none
if "$TDS" credential verify bad.cred --authority-key "$auth_pub"; then
    echo "unexpected: a corrupted credential verified" >&2
    exit 1
fi

printf '\nwalkthrough complete\n'
