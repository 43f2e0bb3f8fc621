"""Writes the demo's JSON Lines files: a CRM seed of contacts and a `lead-sync` batch."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

STAGES = ["subscriber", "lead", "mql", "sql", "customer"]
OWNERS = ["ana", "bo", "chen", "dara"]


def main(out: Path, contacts: int = 200, synced: int = 40) -> None:
    rng = random.Random(7)
    records = {}
    with (out / "seed.jsonl").open("w") as seed:
        for n in range(1, contacts + 1):
            key = f"{n:05d}"
            records[key] = {
                "email": f"contact{n}@example.com",
                "lifecycle_stage": rng.choice(STAGES[:3]),
                "owner": rng.choice(OWNERS),
                "score": rng.randint(0, 100),
            }
            seed.write(
                json.dumps({"entity": f"crm/contacts/{key}", "op": "create", "set": records[key]})
                + "\n"
            )
    with (out / "lead-sync.jsonl").open("w") as batch:
        for key in sorted(rng.sample(sorted(records), synced)):
            before = records[key]
            change = {
                "entity": f"crm/contacts/{key}",
                "op": "update",
                "set": {"lifecycle_stage": "sql", "owner": rng.choice(OWNERS)},
                "before": {"lifecycle_stage": before["lifecycle_stage"]},
                "inputs": {"score": before["score"], "rule": "score >= 0 -> sql"},
                "sources": [f"sheet/leads/{key}"],
            }
            batch.write(json.dumps(change) + "\n")
    (out / "bad.jsonl").write_text(
        '{"entity": "crm/contacts/00001", "op": "update", "set": {"owner": "eve"}}\n'
        '{"entity": "crm/contacts/00002", "op": "update", "set": {"score": NaN}}\n'
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
