"""The golden path's first half over HTTP, as a no-code tool drives it: a batch applied to a
real SQLite CRM through the SQL adapter (a stale draft refused with both values, never
written), then the contact read as it was before the batch, the batch's diff, the whole
collection page by page at a pinned moment."""

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
