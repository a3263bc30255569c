#!/usr/bin/env bash
# A scripted walk through the `tds` verbs that exist so far, as one power-sector deal:
# a data-space authority admits a grid operator; the operator signs a manifest of its
# smart-meter load data and has it registered; it offers the data under the power-sector
# policy template; a planning institute requests, both sign the agreement; the operator's
# provenance log records it and the authority witnesses the log; finally the authority
# revokes the credential and verification fails, as it must.
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

step "The grid operator describes its load data in a signed manifest (Merkle root over 1 MiB chunks)"
head -c 3000000 /dev/zero | tr '\0' 'x' > load.csv
"$TDS" manifest create load.csv --key grid.key --title "Feeder load, 15-minute" --sector power \
    --classification important --residency CN-SX --out load.manifest
asset_id="$("$TDS" manifest show load.manifest | sed -n 's/.*"asset_id": *"\([^"]*\)".*/\1/p')"
"$TDS" manifest verify load.manifest --data load.csv --owner-key "$grid_pub"

step "The authority registers the asset (产权登记) after checking the owner's credential"
"$TDS" manifest register load.manifest --home authority --credential grid.cred --out load.receipt

step "The operator offers the data under the power-sector policy template, priced"
"$TDS" policy template power > power.tdsp
"$TDS" policy check power.tdsp
"$TDS" offer create --key grid.key --asset "$asset_id" --policy power.tdsp --price 12.50 \
    --currency CNY --out offer.cose

step "A planning institute, admitted as a consumer, asks for grid planning inside CN-SX"
"$TDS" key new --out planner.key
planner_pub="$("$TDS" key show planner.key | sed -n 's/.*"public_key_hex": *"\([0-9a-f]*\)".*/\1/p')"
"$TDS" authority admit --home authority --subject-key "$planner_pub" --name "Shanxi Grid Planning Institute" \
    --sector power --role consumer --jurisdiction CN-SX --days 365 --out planner.cred
cat > planner.tdsp <<'POLICY'
policy set;

permit use
  when purpose isA grid/planning
    and industry eq power
    and spatial isPartOf CN-SX
  duty anonymize, attribute("smart-meter load data, provided under TDS");
POLICY
"$TDS" policy contains power.tdsp planner.tdsp
"$TDS" contract request offer.cose --key planner.key --purpose grid/planning --policy planner.tdsp \
    --out request.cose

step "Both parties sign the agreement (one COSE_Sign, two signatures); anyone can check it"
"$TDS" authority crl --home authority --out authority.crl
"$TDS" contract accept request.cose --offer offer.cose --key grid.key --credential planner.cred \
    --authority-key "$auth_pub" --crl authority.crl --out half.cose
"$TDS" contract countersign half.cose --key planner.key --out agreement.cose
"$TDS" agreement verify agreement.cose

step "The operator's provenance log records the manifest and the agreement (its node key is its grid key)"
mkdir -m 700 node && cp grid.key node/node.key && chmod 600 node/node.key
"$TDS" log record --home node --manifest load.manifest
"$TDS" log record --home node --agreement agreement.cose

step "The authority witnesses the log of a member: it cosigns checkpoints only if each extends the last"
"$TDS" log checkpoint --home node > checkpoint-1.txt
log_key="$("$TDS" log key --home node)"
"$TDS" witness cosign --home authority --log-key "$log_key" --credential grid.cred checkpoint-1.txt \
    > checkpoint-1.cosigned
"$TDS" log witnessed --home node --authority-key "$auth_pub" checkpoint-1.cosigned
"$TDS" log annotate --home node --text "load data delivered"
"$TDS" log checkpoint --home node > checkpoint-2.txt
# The second line of a checkpoint is its tree size.
"$TDS" log consistency --home node --from "$(sed -n 2p checkpoint-1.txt)" \
    --to "$(sed -n 2p checkpoint-2.txt)" > consistency.json
"$TDS" witness cosign --home authority --log-key "$log_key" --credential grid.cred checkpoint-2.txt \
    --consistency consistency.json > checkpoint-2.cosigned
cat checkpoint-2.cosigned
"$TDS" log witnessed --home node --authority-key "$auth_pub" checkpoint-2.cosigned
"$TDS" log verify --home node --authority-key "$auth_pub"

step "Later, an arbiter checks what was agreed and logged, trusting only the authority's key"
agreement_id="$("$TDS" agreement verify agreement.cose | sed -n 's/.*"agreement_id": *"\([^"]*\)".*/\1/p')"
"$TDS" evidence export --home node --agreement "$agreement_id" --credential grid.cred --out evidence.cbor
"$TDS" evidence verify evidence.cbor --authority-key "$auth_pub"

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
