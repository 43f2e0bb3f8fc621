"""The golden path over HTTP, as a no-code tool drives it, against a real SQLite CRM: a batch
applied through the SQL adapter (a stale draft refused with both values, never written), the
contact read as it was before the batch, the batch's diff, the whole collection page by page
at a pinned moment; and end to end: a batch that trips its lane, the rollback planned,
approved by a second token and applied around a person's later edit, the drift reconciled,
the lane re-enabled with proof, the history verified."""

from __future__ import annotations

BATCH = "lead-sync-run-1"


def update(key, stage, **extra):
    return {
        "entity": f"crm/contacts/{key}",
        "op": "update",
        "set": {"stage": stage, "owner": "bo"},
        **extra,
    }


def test_a_batch_applied_over_http_and_the_contact_read_as_it_was_before(api):
    api.edit("7", "customer")  # someone edits contact 7 in the CRM, outside the ledger
    changes = [update(k, "mql") for k in range(1, 31)]
    changes[6] = update(7, "mql", expected={"stage": "lead"})  # drafted before that edit
    body = {"system": "crm", "batch": BATCH, "workflow": "lead-sync", "changes": changes}
    with api.client("sync-bot", **{"Idempotency-Key": "run-1"}) as client:
        applied = client.post("/v1/apply", json=body)
        again = client.post("/v1/apply", json=body)
        summary = applied.json()
        assert applied.status_code == 409, applied.text
        assert summary["error"] == "refused" and "1 change(s)" in summary["message"]
        assert (summary["counts"]["applied"], summary["counts"]["stale"]) == (29, 1)
        (refused,) = summary["refused"]
        assert refused["entity"] == "crm/contacts/7" and refused["status"] == "stale"
        assert (refused["field"], refused["expected"], refused["actual"]) == (
            "stage",
            "lead",
            "customer",
        )
        assert [o["status"] for o in summary["outcomes"]].count("applied") == 29
        assert len(summary["outcomes"]) == 30
        assert again.content == applied.content and again.headers["Idempotent-Replayed"] == "true"
        assert api.stage("3") == "mql" and api.stage("7") == "customer"  # never written over

        (batch,) = [b for b in client.get("/v1/batches").json() if b["batch"] == BATCH]
        before = f"position:{batch['first_position'] - 1}"
        then = client.get("/v1/records/crm/contacts/3", params={"at": before}).json()
        now = client.get("/v1/records/crm/contacts/3").json()
        assert then["fields"] == {"stage": "lead", "owner": "ana"}
        assert now["fields"] == {"stage": "mql", "owner": "bo"}
        history = client.get("/v1/records/crm/contacts/3/history").json()
        assert [(a["batch"], a["actor"]) for a in history] == [
            ("baseline", "setup"),
            (BATCH, "sync-bot"),
        ]
        assert history[-1]["delta"]["stage"] == ["lead", "mql"]

        diff = client.get("/v1/diff", params={"target": "crm/contacts", "from": before}).json()
        changed = {d["entity"] for d in diff}
        assert len(changed) == 29 and "crm/contacts/7" not in changed  # refused: unchanged
        assert diff[0]["fields"]["owner"] == ["ana", "bo"]


def test_a_collection_is_read_page_by_page_at_one_moment(api):
    seen = []
    with api.client("admin") as client:
        page = client.get("/v1/collections/crm/contacts", params={"limit": 20}).json()
        seen += page["records"]
        # a change recorded while paging is not in the pages that follow
        assert client.post("/v1/actions", json=update(50, "sql")).status_code == 201
        while page["next_cursor"]:
            page = client.get(
                "/v1/collections/crm/contacts",
                params={"cursor": page["next_cursor"], "limit": 20},
            ).json()
            seen += page["records"]
        latest = client.get("/v1/collections/crm/contacts", params={"limit": 1000}).json()
    keys = [r["entity"].rsplit("/", 1)[1] for r in seen]
    assert keys == sorted(str(n) for n in range(1, 51))  # key order, each once
    assert {r["fields"]["stage"] for r in seen} == {"lead"}
    assert latest["next_cursor"] is None
    by_key = {r["entity"]: r["fields"]["stage"] for r in latest["records"]}
    assert by_key["crm/contacts/50"] == "sql"


def test_recording_a_batch_after_the_fact_is_all_or_nothing(api):
    changes = [update(k, "mql", before={"stage": "lead"}) for k in (1, 2, 3)]
    changes[2]["before"] = {"stage": "customer"}  # contradicts the ledger
    with api.client("recorder") as client:
        refused = client.post("/v1/actions", json={"changes": changes, "batch": "import-1"})
        changes[2]["before"] = {"stage": "lead"}
        recorded = client.post("/v1/actions", json={"changes": changes, "batch": "import-1"})
        again = client.post("/v1/actions", json={"changes": changes, "batch": "import-1"})
    assert refused.status_code == 409 and refused.json()["field"] == "changes[2].stage"
    assert recorded.status_code == 201 and recorded.json()["recorded"] == 3
    assert again.status_code == 200 and again.json()["already_recorded"] == 3
    assert api.stage("1") == "lead"  # recorded after the fact: the CRM is not written


GOLDEN_LANE = """
[lanes.lead-sync]
systems = ["crm"]
approval = "two-person"

[lanes.lead-sync.triggers]
updates = { more_than = 20 }

[lanes.lead-sync.reenable]
reconciled = ["crm/contacts"]
approver = true
"""


def test_the_golden_path_end_to_end_over_http(api):
    """Apply a batch through the SQL adapter; it trips the lane, which pauses; read a contact
    as it was; plan the rollback, approve it with a second token, apply it (leaving alone the
    contact edited since); reconcile; re-enable with proof; verify."""
    api.config.write_text(api.config.read_text() + GOLDEN_LANE)
    body = {
        "system": "crm",
        "batch": BATCH,
        "workflow": "lead-sync",
        "changes": [update(k, "mql") for k in range(1, 31)],
    }
    with api.client("sync-bot") as bot:
        tripped = bot.post("/v1/apply", json=body)
        assert tripped.status_code == 423, tripped.text
        assert (tripped.json()["trigger"], tripped.json()["counts"]["applied"]) == ("updates", 30)
        assert api.stage("3") == "mql"
        later = bot.post("/v1/apply", json={**body, "batch": "lead-sync-run-2"})
        assert later.status_code == 423 and later.json()["paused_by"] == "stop trigger updates"
        (batch,) = [b for b in bot.get("/v1/batches").json() if b["batch"] == BATCH]
        before = f"position:{batch['first_position'] - 1}"
        was = bot.get("/v1/records/crm/contacts/3", params={"at": before}).json()
        assert was["fields"] == {"stage": "lead", "owner": "ana"}

    api.edit("7", "customer")  # a person fixes contact 7 in the CRM after the batch
    with api.client("roller") as roller, api.client("approver") as approver:
        planned = roller.post("/v1/rollbacks", json={"batches": [BATCH]})
        assert planned.status_code == 201, planned.text
        plan = planned.json()
        assert [c["entity"] for c in plan["conflicts"]] == ["crm/contacts/7"]
        unapproved = roller.post(plan["links"]["apply"])
        assert unapproved.status_code == 409 and api.stage("3") == "mql"  # nothing written
        approved = approver.post(plan["links"]["approvals"], json={"seal": plan["seal"]})
        assert approved.status_code == 201, approved.text
        applied = roller.post(plan["links"]["apply"])
        assert applied.status_code == 200, applied.text
    with api.client("reader") as reader:
        assert reader.get(plan["links"]["plan"]).json()["status"] == "verified"
    assert [api.stage(str(k)) for k in range(1, 31) if k != 7] == ["lead"] * 29
    assert api.stage("7") == "customer"  # the person's edit, never written over

    with api.client("admin") as admin:
        drift = admin.post("/v1/reconcile/check", json={"system": "crm", "collection": "contacts"})
        assert [d["key"] for d in drift.json()["drifts"]] == ["7"]
        adopted = admin.post(
            "/v1/reconcile/apply",
            json={"system": "crm", "collection": "contacts", "policy": "target"},
        )
        assert adopted.status_code == 200 and adopted.json()["verification"]["clean"] is True
        enabled = admin.post(
            "/v1/lanes/lead-sync/enable", json={"reason": "batch reverted", "approver": "carol"}
        )
        assert enabled.status_code == 200 and enabled.json()["lane"]["state"] == "active"
        verified = admin.post("/v1/verify")
        assert verified.status_code == 200, verified.text
    with api.client("sync-bot") as bot:
        small = {**body, "batch": "lead-sync-run-3", "changes": [update(12, "sql")]}
        assert bot.post("/v1/apply", json=small).status_code == 200
    assert api.stage("12") == "sql"
