#!/usr/bin/env bash
# The demo's steps (golden path 1-8 on SQLite), with `ledger` and `python` already on PATH:
# `scripts/demo` sets up .venv and runs this; the test suite runs it into a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${DEMO_OUT:-demo-output}
rm -rf "$out" && mkdir -p "$out/records"
export LEDGER_DB="$out/records/ledger.db"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

python scripts/demo_data.py "$out/records"
step "Create the ledger" ledger init
step "Record the CRM's contacts as they are (one batch)" \
    ledger import "$out/records/seed.jsonl" --batch crm-seed --workflow crm-import --actor demo
step "Name this moment" ledger checkpoint before-lead-sync
step "Workflow lead-sync updates 40 contacts (one batch, all or nothing)" \
    ledger import "$out/records/lead-sync.jsonl" --batch lead-sync-run-1 --workflow lead-sync \
    --workflow-version 3 --actor zapier --trigger schedule
step "Running the same batch again records nothing twice" \
    ledger import "$out/records/lead-sync.jsonl" --batch lead-sync-run-1 --workflow lead-sync
contact=$(head -1 "$out/records/lead-sync.jsonl" | python -c 'import json,sys; print(json.load(sys.stdin)["entity"])')
step "A contact before the batch" ledger state "$contact" --at before-lead-sync
step "The same contact now" ledger state "$contact"
step "Its history" ledger history "$contact"
step "The collection at the checkpoint (first 5)" \
    ledger collection crm/contacts --at before-lead-sync --limit 5
step "What the batch changed (first 12 lines)" \
    bash -c "ledger diff crm/contacts before-lead-sync | head -14"
step "Batches" ledger batches
step "Checkpoints" ledger checkpoints
printf '\n\033[1m== Bad input is refused, naming the line and field; nothing is recorded\033[0m\n'
printf '$ ledger import %s\n' "$out/records/bad.jsonl"
if ledger import "$out/records/bad.jsonl"; then echo "expected a refusal" >&2; exit 1; fi

printf '\n\033[1m== Golden path 1-3: a CRM, a lead-sync batch through the SQL adapter, outside edits\033[0m\n'
python scripts/golden_path.py "$out" | sed 's/^/  /'
export LEDGER_DB="$out/ledger.db" LEDGER_CONFIG="$out/ledger.toml"
step "The batch: every applied change recorded once, despite the retries" ledger batches
contact=$(cat "$out/synced-contact.txt")
step "A synced contact: its before-values were read from the CRM, not guessed" \
    ledger history "crm/contacts/$contact"
step "Golden path 4: the contact as it was before the batch" \
    ledger state "crm/contacts/$contact" --at before-lead-sync
step "... the whole collection at that checkpoint (first 3)" \
    ledger collection crm/contacts --at before-lead-sync --limit 3
step "... and the diff the batch made (first lines)" \
    bash -c "ledger diff crm/contacts before-lead-sync | head -8"
expect_code() { local want=$1; shift; set +e; "$@"; local got=$?; set -e
    [ "$got" = "$want" ] || { echo "expected exit code $want, got $got" >&2; exit 1; }; }
printf '\n\033[1m== Golden path 5: plan the rollback (dry run; exit code 2: conflicts)\033[0m\n'
expect_code 2 ledger rollback plan --batch lead-sync-run-1 --out "$out/rollback.plan" \
    --runbook "$out/rollback.md" --json > "$out/rollback-plan.json"
python - "$out/rollback-plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
print(f"  {len(plan['compensations'])} clean compensations, newest first; "
      f"{len(plan['conflicts'])} conflicts (policy {plan['policy']}):")
for conflict in plan["conflicts"]:
    competing = conflict["competing"][0]
    print(f"  - {conflict['entity']}: {conflict['reason']}: {competing['field']} is now "
          f"{competing['value']!r} ({competing['by']})")
PY
echo "  runbook written to $out/rollback.md"
printf '\n\033[1m== Golden path 6: apply it (exit code 2: the conflicts were skipped, for review)\033[0m\n'
expect_code 2 ledger rollback apply --plan "$out/rollback.plan" > "$out/rollback-apply.txt"
grep -v '^crm/' "$out/rollback-apply.txt"
step "The contact is restored field for field: no difference from before the batch" \
    ledger diff "crm/contacts/$contact" before-lead-sync
printf '\n\033[1m== Running the rollback again changes nothing\033[0m\n'
expect_code 2 ledger rollback apply --plan "$out/rollback.plan" --json > "$out/rollback-again.json"
python - "$out/rollback-again.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
done = sum(1 for o in report["outcomes"] if o.get("note"))
print(f"  {report['counts']}: all {done} compensations were already applied; nothing written")
PY
printf '\n\033[1m== Golden path 7: reconcile finds exactly the outside edits (exit code 2: drift)\033[0m\n'
expect_code 2 ledger reconcile check crm/contacts
printf '\n\033[1m== ... and adopts them into the ledger, after which the report is clean\033[0m\n'
expect_code 0 ledger reconcile apply crm/contacts --policy target
step "The adopted edit, explained in history" ledger history crm/contacts/00010

printf '\n\033[1m== Golden path 8: a stop trigger pauses lead-sync mid-run\033[0m\n'
python scripts/demo_lanes.py lane "$out" | sed 's/^/  /'
printf '$ ledger apply run-2.jsonl --system crm --batch lead-sync-run-2 --workflow lead-sync\n'
set +e; ledger apply "$out/run-2.jsonl" --system crm --batch lead-sync-run-2 --workflow lead-sync \
    > "$out/run-2.txt" 2> "$out/run-2.log"; code=$?; set -e
cat "$out/run-2.txt"
[ "$code" != 0 ] || { echo "expected the run to stop on the trip" >&2; exit 1; }
step "The lane is paused, with the trigger and its evidence" ledger lane lead-sync
printf '\n\033[1m== Re-enabling needs proof: refused, naming what is missing (exit code 1)\033[0m\n'
printf '$ ledger enable lead-sync --reason "stage mapping fixed" --actor ops\n'
expect_code 1 ledger enable lead-sync --reason "stage mapping fixed" --actor ops
printf '\n\033[1m== Repair: roll back what the stopped run wrote, then reconcile (clean)\033[0m\n'
expect_code 0 ledger rollback apply --batch lead-sync-run-2 --actor ops > "$out/rollback-2.txt"
tail -1 "$out/rollback-2.txt"
step "Reconciliation: the ledger and the CRM agree" ledger reconcile check crm/contacts
step "With a clean reconciliation and an approver, lead-sync is enabled" \
    ledger enable lead-sync --reason "stage mapping fixed" --approver carol --actor ops
step "The history verifies as untampered" ledger verify
python scripts/demo_lanes.py tamper "$out" | sed 's/^/  /'
printf '\n\033[1m== ... and one flipped bit in a copy is caught, by position (exit code 1)\033[0m\n'
printf '$ ledger verify --db tampered.db\n'
expect_code 1 ledger verify --db "$out/tampered.db"
echo
echo "demo finished: ledgers in $out/"
