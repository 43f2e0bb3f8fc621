"""The lane rows of ledger.toml: read into typed lanes, every bad setting refused by its path."""

import re
from datetime import timedelta

import pytest

from ledger.config import load_systems
from ledger.errors import ConfigurationError
from ledger.lane_config import load_lanes
from ledger.lanes import LaneConfig
from ledger.reenable import ReenableRule
from ledger.triggers import FieldGuard, RateLimit, Triggers, VolumeLimit

SYSTEMS = '[systems.crm]\ntype = "sql"\nurl = "sqlite://"\ncollections = {}\n'
LANE = """
[lanes.lead-sync]
owner = "revops@example.com"
systems = ["crm"]
notify = ["log"]
repair = "rollback"
receipt_fields = ["lifecycle_stage", "owner"]
approval = "two-person"
on_trip = "plan-rollback"

[lanes.lead-sync.triggers]
failure_rate = { above = 0.05, min_actions = 50 }
stale_rate = { above = 0.10, min_actions = 50 }
deletes = { more_than = 200 }
updates = { above_median_percent = 300, runs = 5 }
too_few = { fewer_than = 10 }
fields.lifecycle_stage = { order = ["lead", "mql", "sql", "opportunity", "customer"] }
fields.amount = { at_most_percent = 50 }
rollback_conflicts = { more_than = 20 }
drift_share = { above = 0.02 }
source_age = { older_than = "24h" }

[lanes.lead-sync.reenable]
reconciled = ["crm/contacts"]
canary = 50
approver = true
"""


def config(tmp_path, text):
    path = tmp_path / "ledger.toml"
    path.write_text(text)
    return str(path)


def test_a_lane_row_is_read_into_a_typed_lane(tmp_path):
    path = config(tmp_path, SYSTEMS + LANE)
    assert load_lanes(path) == {
        "lead-sync": LaneConfig(
            workflow="lead-sync",
            owner="revops@example.com",
            systems=("crm",),
            notify=("log",),
            repair="rollback",
            receipt_fields=("lifecycle_stage", "owner"),
            approval="two-person",
            on_trip="plan-rollback",
            triggers=Triggers(
                failure_rate=RateLimit(0.05, 50),
                stale_rate=RateLimit(0.10, 50),
                volume={
                    "update": VolumeLimit(above_median_percent=300, runs=5),
                    "delete": VolumeLimit(more_than=200),
                },
                too_few=10,
                fields={
                    "lifecycle_stage": FieldGuard(
                        order=("lead", "mql", "sql", "opportunity", "customer")
                    ),
                    "amount": FieldGuard(at_most_percent=50),
                },
                rollback_conflicts=20,
                drift_share=0.02,
                source_age=timedelta(hours=24),
            ),
            reenable=ReenableRule(reconciled=("crm/contacts",), canary=50, approver=True),
        )
    }
    assert "crm" in load_systems(path)  # the systems still read beside the lanes


def test_a_lane_needs_nothing_but_its_name(tmp_path):
    assert load_lanes(config(tmp_path, "[lanes.billing]\n")) == {"billing": LaneConfig("billing")}
    assert load_lanes(config(tmp_path, SYSTEMS)) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[lanes.x]\nowners = 'a'\n", "lanes.x.owners is not a setting"),
        ("[lanes.x]\napproval = 'two'\n", "lanes.x.approval must be one of 'none', 'two-person'"),
        ("[lanes.x]\non_trip = 'rollback'\n", "lanes.x.on_trip must be one of 'pause'"),
        ("[lanes.x]\nrepair = 'fix'\n", "lanes.x.repair 'fix' is not one of"),
        (SYSTEMS + "[lanes.x]\nsystems = ['erp']\n", "lanes.x.systems names 'erp'"),
        ("[lanes.'x y']\n", "lanes.x y: workflow 'x y' must be letters"),
        ("[lanes.x.triggers]\ndelete = { more_than = 1 }\n", "lanes.x.triggers.delete is not"),
        (
            "[lanes.x.triggers]\nfailure_rate = { above = 5 }\n",
            "lanes.x.triggers.failure_rate.above is a share between 0 and 1",
        ),
        (
            "[lanes.x.triggers]\nstale_rate = { min_actions = 5 }\n",
            "lanes.x.triggers.stale_rate.above is missing",
        ),
        (
            "[lanes.x.triggers]\nfailure_rate = { above = 0.1, min_action = 5 }\n",
            "lanes.x.triggers.failure_rate.min_action is not a setting",
        ),
        (
            "[lanes.x.triggers]\ndeletes = { more_than = -1 }\n",
            "lanes.x.triggers.deletes.more_than must not be negative",
        ),
        (
            "[lanes.x.triggers]\nupdates = { runs = 5 }\n",
            "lanes.x.triggers.updates needs more_than or above_median_percent",
        ),
        (
            "[lanes.x.triggers]\ntoo_few = 10\n",
            "lanes.x.triggers.too_few must be a table of fewer_than",
        ),
        (
            "[lanes.x.triggers]\nfields.amount = { at_most = 5 }\n",
            "lanes.x.triggers.fields.amount.at_most is not a setting",
        ),
        (
            "[lanes.x.triggers]\nfields.stage = { order = ['a', 'a'] }\n",
            "lanes.x.triggers.fields.stage.order names a value twice",
        ),
        (
            "[lanes.x.triggers]\nsource_age = { older_than = '1 day' }\n",
            "lanes.x.triggers.source_age.older_than '1 day' must look like 7d",
        ),
        (
            "[lanes.x.triggers]\ndrift_share = { above = '2%' }\n",
            "lanes.x.triggers.drift_share.above must be a number",
        ),
        ("[lanes.x.reenable]\ncanary = true\n", "lanes.x.reenable.canary must be a whole number"),
        ("[lanes.x.reenable]\ncanary = 0\n", "lanes.x.reenable.canary must be at least 1"),
        (
            "[lanes.x.reenable]\nreconciled = ['contacts']\n",
            "lanes.x.reenable.reconciled names 'contacts'; name collections as system/collection",
        ),
        ("[lanes.x.triggers]\nfields = 1\n", "lanes.x.triggers.fields must be a table"),
        ("[lanes.x]\ntriggers = 1\n", "lanes.x.triggers must be a table of failure_rate"),
        ("[lanes.x.reenable]\nproof = 1\n", "lanes.x.reenable.proof is not a setting"),
        ("lanes = 1\n", "lanes must be [lanes.WORKFLOW] tables"),
        ("[lane.x]\n", "lane is not a setting"),
    ],
)
def test_a_bad_lane_setting_is_refused_naming_its_path(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_lanes(config(tmp_path, text))
