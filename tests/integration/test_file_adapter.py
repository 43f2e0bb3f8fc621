"""The file adapter on real CSV and JSON Lines files in a temporary directory.

The adapter contract, then what is particular to files: values keeping their types through
each format, files kept sorted (and hand-edited ones refused or repaired), atomic
replacement (a failed or killed writer leaves the original file), the lock serialising
writers in separate processes, and a bulk write being one rewrite of the file.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from contextlib import suppress
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from adapter_contract import SEED, AdapterContract

import adapters.files.ordering as ordering
from adapters.files import (
    CsvAdapter,
    CsvCollection,
    FileAdapter,
    JsonLinesAdapter,
    JsonLinesCollection,
)
from ledger import Address, Change, Run, Target, open_ledger
from ledger.errors import AdapterError, ConfigurationError
from ledger.ports import Write
from ledger.values import ABSENT, same

C = "contacts"
CONTACT_COLUMNS = {"name": "text", "stage": "text", "score": "int"}
FORMATS = ["csv", "jsonl"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]], bom: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as source:
        return list(csv.reader(source))


def write_jsonl(path: Path, objects: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in objects), encoding="utf-8")


def seed_contacts(directory: Path, fmt: str, records: dict[str, dict[str, Any]]) -> FileAdapter:
    """A file written by hand (not by the adapter), in key order, and an adapter over it."""
    ordered = sorted(records.items())
    if fmt == "csv":
        rows = [[key, r["name"], r["stage"] or "", r["score"]] for key, r in ordered]
        write_csv(directory / "contacts.csv", ["id", *CONTACT_COLUMNS], rows)
        return CsvAdapter("sheets", directory, {C: CsvCollection(columns=CONTACT_COLUMNS)})
    write_jsonl(directory / "contacts.jsonl", [{"id": key, **r} for key, r in ordered])
    return JsonLinesAdapter("exports", directory, {C: JsonLinesCollection()})


def contacts_adapter(directory: Path, fmt: str) -> FileAdapter:
    """An adapter over a contacts file that does not exist yet."""
    if fmt == "csv":
        return CsvAdapter("sheets", directory, {C: CsvCollection(columns=CONTACT_COLUMNS)})
    return JsonLinesAdapter("exports", directory, {C: JsonLinesCollection()})


def names_in(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


class TestCsvAdapter(AdapterContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def make_adapter(self, records: dict[str, dict[str, Any]]) -> FileAdapter:
        return seed_contacts(self.directory, "csv", records)


class TestJsonLinesAdapter(AdapterContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def make_adapter(self, records: dict[str, dict[str, Any]]) -> FileAdapter:
        return seed_contacts(self.directory, "jsonl", records)


# CSV types ---------------------------------------------------------------------------------

TYPED = {
    "name": "text",
    "score": "int",
    "ratio": "float",
    "amount": "decimal",
    "signed_up": "date",
    "seen": "datetime",
    "active": "bool",
    "meta": "json",
}
DEAL = {
    "name": 'Ann, "the" first\nof her name',
    "score": 2**70,
    "ratio": 0.1,
    "amount": Decimal("1234.50"),
    "signed_up": date(2024, 2, 29),
    "seen": datetime(
        2024, 3, 1, 12, 30, 5, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
    ),
    "active": False,
    "meta": {"tags": ["a", "é"], "n": 1, "x": 1.5, "none": None},
}


def typed_adapter(directory: Path, **options: Any) -> CsvAdapter:
    return CsvAdapter("sheets", directory, {"deals": CsvCollection(columns=TYPED, **options)})


def test_csv_column_types_round_trip_exactly(tmp_path: Path) -> None:
    adapter = typed_adapter(tmp_path)
    (result,) = adapter.write("deals", [Write("d1", "create", DEAL)])
    assert result.outcome == "applied"

    back = adapter.read("deals", ["d1"])["d1"]
    assert same(back, DEAL)  # same type all the way down: 0.1 a float, 1234.50 a Decimal
    assert str(back["amount"]) == "1234.50"
    assert back["seen"].utcoffset() == timedelta(hours=5, minutes=30)
    assert read_csv(tmp_path / "deals.csv") == [
        ["id", *TYPED],
        [
            "d1",
            DEAL["name"],
            str(2**70),
            "0.1",
            "1234.50",
            "2024-02-29",
            "2024-03-01T12:30:05.123456+05:30",
            "false",
            '{"tags": ["a", "é"], "n": 1, "x": 1.5, "none": null}',
        ],
    ]


def test_csv_empty_cells_are_null_in_every_column_type(tmp_path: Path) -> None:
    write_csv(tmp_path / "deals.csv", ["id", *TYPED], [["d1", *[""] * len(TYPED)]])
    adapter = typed_adapter(tmp_path)
    assert adapter.read("deals", ["d1"])["d1"] == dict.fromkeys(TYPED)

    nulls = dict.fromkeys(TYPED)
    (result,) = adapter.write("deals", [Write("d2", "create", nulls)])
    assert result.outcome == "applied"
    assert read_csv(tmp_path / "deals.csv")[2] == ["d2", *[""] * len(TYPED)]


def test_csv_cannot_tell_an_empty_string_from_null_unless_configured(tmp_path: Path) -> None:
    adapter = typed_adapter(tmp_path)
    (refused,) = adapter.write("deals", [Write("d1", "create", {"name": ""})])
    assert refused.outcome == "failed" and refused.field == "name"
    assert "empty='text'" in refused.error
    assert not (tmp_path / "deals.csv").exists()  # nothing applied, nothing written

    texts = typed_adapter(tmp_path, empty="text")
    (applied,) = texts.write("deals", [Write("d1", "create", {"name": "", "score": None})])
    assert applied.outcome == "applied"
    assert texts.read("deals", ["d1"])["d1"]["name"] == ""
    (no_null,) = texts.write("deals", [Write("d2", "create", {"name": None})])
    assert no_null.outcome == "failed" and no_null.field == "name"


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("score", "12", "int"),
        ("score", 12.0, "int"),
        ("score", True, "int"),
        ("ratio", 3, "float"),
        ("ratio", float("nan"), "float"),
        ("amount", 1.5, "decimal"),
        ("signed_up", datetime(2024, 1, 1), "date"),
        ("seen", "2024-01-01T00:00:00", "datetime"),
        ("active", 1, "bool"),
        ("meta", Decimal("1.5"), "json"),
        ("meta", (1, 2), "json"),
    ],
)
def test_a_value_that_does_not_fit_its_column_fails_and_nothing_of_that_write_applies(
    tmp_path: Path, field: str, value: Any, kind: str
) -> None:
    adapter = typed_adapter(tmp_path)
    adapter.write("deals", [Write("d1", "create", DEAL)])
    unfit, other = adapter.write(
        "deals",
        [
            Write("d1", "update", {"name": "Changed", field: value}, expected={"score": 2**70}),
            Write("d2", "create", {"name": "Bob"}),
        ],
    )
    assert (unfit.outcome, unfit.field) == ("failed", field)
    assert "'d1'" in unfit.error and repr(field) in unfit.error and f"{kind} column" in unfit.error
    assert same(unfit.before, DEAL)
    assert other.outcome == "applied"
    assert same(adapter.read("deals", ["d1"])["d1"], DEAL)


def test_a_hand_edited_cell_that_is_not_its_type_is_reported_with_line_and_column(
    tmp_path: Path,
) -> None:
    write_csv(tmp_path / "contacts.csv", ["id", *CONTACT_COLUMNS], [["1", "Ann", "", "ten"]])
    adapter = contacts_adapter(tmp_path, "csv")
    with pytest.raises(AdapterError, match=r"line 2: column 'score' holds 'ten'.*not a int"):
        adapter.read(C, ["1"])
    (result,) = adapter.write(C, [Write("1", "update", {"score": 10})])
    assert result.outcome == "failed" and "'ten'" in result.error
    (other,) = adapter.write(C, [Write("2", "create", {"name": "Bob", "score": 1})])
    assert other.outcome == "applied"  # the unreadable row is kept as it is
    assert read_csv(tmp_path / "contacts.csv")[1] == ["1", "Ann", "", "ten"]


def test_csv_has_no_absent_field(tmp_path: Path) -> None:
    adapter = contacts_adapter(tmp_path, "csv")
    (created,) = adapter.write(C, [Write("1", "create", {"name": "Ann"})])
    assert created.outcome == "applied"
    assert adapter.read(C, ["1"])["1"] == {"name": "Ann", "stage": None, "score": None}

    (unset,) = adapter.write(C, [Write("1", "update", unset=("stage",))])
    assert unset.outcome == "failed" and unset.field == "stage" and "write None" in unset.error
    (absent,) = adapter.write(C, [Write("1", "update", {"score": 1}, expected={"stage": ABSENT})])
    assert (absent.outcome, absent.actual) == ("stale", None)


def test_a_field_that_is_not_a_column_fails_naming_it(tmp_path: Path) -> None:
    adapter = contacts_adapter(tmp_path, "csv")
    (result,) = adapter.write(C, [Write("1", "create", {"name": "Ann", "email": "a@x"})])
    assert (result.outcome, result.field) == ("failed", "email")
    assert "'email' is not a column" in result.error
    assert not (tmp_path / "contacts.csv").exists()


def test_an_existing_header_decides_the_columns_and_a_byte_order_mark_is_kept(
    tmp_path: Path,
) -> None:
    write_csv(tmp_path / "contacts.csv", ["score", "id", "name"], [["7", "1", "Ann"]], bom=True)
    adapter = contacts_adapter(tmp_path, "csv")
    assert adapter.read(C, ["1"])["1"] == {"score": 7, "name": "Ann"}
    (result,) = adapter.write(C, [Write("2", "create", {"name": "Bob", "score": 8})])
    assert result.outcome == "applied"
    data = (tmp_path / "contacts.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbfscore,id,name\r\n7,1,Ann\r\n8,2,Bob\r\n")
    (stage,) = adapter.write(C, [Write("1", "update", {"stage": "lead"})])
    assert stage.outcome == "failed" and "'stage' is not a column" in stage.error


def test_composite_keys_are_joined_percent_encoded_and_checked(tmp_path: Path) -> None:
    collection = CsvCollection(key=("region", "number"), columns={"name": "text"})
    adapter = CsvAdapter("sheets", tmp_path, {"offices": collection})
    results = adapter.write(
        "offices",
        [
            Write("eu/7", "create", {"name": "Paris"}),
            Write("a%2Fb/1", "create", {"name": "Slash"}),
            Write("eu", "create", {"name": "One part"}),
            Write("a%2fb/2", "create", {"name": "Not canonical"}),
        ],
    )
    assert [r.outcome for r in results] == ["applied", "applied", "failed", "failed"]
    assert "2 part(s)" in results[2].error
    assert read_csv(tmp_path / "offices.csv") == [
        ["region", "number", "name"],
        ["a/b", "1", "Slash"],
        ["eu", "7", "Paris"],
    ]
    assert [key for key, _ in adapter.scan("offices")] == ["a%2Fb/1", "eu/7"]


def test_a_write_cannot_change_a_key_field(tmp_path: Path) -> None:
    adapter = seed_contacts(tmp_path, "jsonl", SEED)
    same_key, other_key = adapter.write(
        C,
        [
            Write("1", "update", {"id": "1", "score": 11}),
            Write("2", "update", {"id": "3"}),
        ],
    )
    assert same_key.outcome == "applied"
    assert (other_key.outcome, other_key.field) == ("failed", "id")
    assert adapter.read(C, ["1", "3"]) == {"1": {**SEED["1"], "score": 11}, "3": None}


def test_column_types_are_checked_when_configured() -> None:
    with pytest.raises(ConfigurationError, match=r"columns\.score"):
        CsvCollection(columns={"score": "integer"})


# JSON Lines types -------------------------------------------------------------------------

EVERY_JSON_TYPE = {
    "int": 1,
    "float": 1.0,
    "tenth": 0.1,
    "big": 2**100,
    "negative_big": -(2**80),
    "yes": True,
    "no": False,
    "null": None,
    "nested": {"list": [1, 2.5, {"x": None}, []], "empty": {}},
    "text": 'é \n \u2028 "quoted"',
    "precise": Decimal("0.1000000000000000000001"),
}


def test_jsonl_keeps_json_types_exactly(tmp_path: Path) -> None:
    adapter = contacts_adapter(tmp_path, "jsonl")
    (result,) = adapter.write(C, [Write("1", "create", EVERY_JSON_TYPE)])
    assert result.outcome == "applied"
    back = adapter.read(C, ["1"])["1"]
    assert same(back, EVERY_JSON_TYPE)  # 1 stays an int, 1.0 a float, big ints exact
    # one line: \u2028 is a line break to str.splitlines, not to JSON Lines
    line, end = (tmp_path / "contacts.jsonl").read_text(encoding="utf-8").split("\n")
    assert end == ""
    assert line.startswith('{"id": "1", "int": 1, "float": 1.0, "tenth": 0.1, "big": 1267650')
    assert '"precise": 0.1000000000000000000001' in line


def test_jsonl_keeps_null_and_absent_apart(tmp_path: Path) -> None:
    adapter = contacts_adapter(tmp_path, "jsonl")
    adapter.write(C, [Write("1", "create", {"stage": None})])
    assert adapter.read(C, ["1"])["1"] == {"stage": None}

    stale, applied = adapter.write(
        C,
        [
            Write("1", "update", {"score": 1}, expected={"score": None}),
            Write("1", "update", {"score": 1}, expected={"score": ABSENT}),
        ],
    )
    assert (stale.outcome, stale.field, stale.actual) == ("stale", "score", ABSENT)
    assert applied.outcome == "applied"
    (unset,) = adapter.write(C, [Write("1", "update", unset=("stage",))])
    assert unset.outcome == "applied"
    assert adapter.read(C, ["1"])["1"] == {"score": 1}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (date(2024, 1, 1), "no dates"),
        (Decimal("1.5"), "read back from JSON as 1.5"),
        ((1, 2), "no tuple"),
        (float("inf"), "no NaN or infinity"),
        ({1: "x"}, "not text"),
        (b"bytes", "no bytes"),
    ],
)
def test_jsonl_refuses_values_plain_json_cannot_hold(
    tmp_path: Path, value: Any, reason: str
) -> None:
    adapter = contacts_adapter(tmp_path, "jsonl")
    (result,) = adapter.write(C, [Write("1", "create", {"name": "Ann", "odd": value})])
    assert (result.outcome, result.field) == ("failed", "odd")
    assert reason in result.error and "'1'" in result.error
    assert not (tmp_path / "contacts.jsonl").exists()


def test_hand_written_json_lines_are_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "contacts.jsonl"
    path.write_bytes(b'{"id":7,"name":"Ann"}\n\n{ "id": "8", "name": "Bob" }')  # no final newline
    adapter = contacts_adapter(tmp_path, "jsonl")
    assert dict(adapter.scan(C)) == {"7": {"name": "Ann"}, "8": {"name": "Bob"}}
    (result,) = adapter.write(C, [Write("7", "update", {"name": "Anne"})])
    assert result.outcome == "applied"
    assert path.read_bytes() == b'{"id": 7, "name": "Anne"}\n{ "id": "8", "name": "Bob" }\n'


def test_a_line_that_is_not_strict_json_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "contacts.jsonl").write_text('{"id": "1", "a": 1, "a": 2}\n')
    adapter = contacts_adapter(tmp_path, "jsonl")
    with pytest.raises(AdapterError, match=r"line 1.*'a' appears twice"):
        list(adapter.scan(C))


# Missing files, several writes to one key, configuration ----------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_file_reads_as_empty_and_the_first_create_makes_it(
    tmp_path: Path, fmt: str
) -> None:
    adapter = contacts_adapter(tmp_path, fmt)
    assert adapter.read(C, ["1"]) == {"1": None}
    assert list(adapter.scan(C)) == []
    (stale,) = adapter.write(C, [Write("1", "update", {"name": "x"})])
    assert stale.outcome == "stale"
    assert not (tmp_path / f"contacts.{fmt}").exists()  # nothing applied, no file

    (created,) = adapter.write(C, [Write("1", "create", SEED["1"])])
    assert created.outcome == "applied"
    assert adapter.read(C, ["1"]) == {"1": SEED["1"]}
    if fmt == "csv":
        assert read_csv(tmp_path / "contacts.csv")[0] == ["id", "name", "stage", "score"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_writes_to_one_key_in_one_call_apply_in_the_given_order(tmp_path: Path, fmt: str) -> None:
    adapter = seed_contacts(tmp_path, fmt, SEED)
    new = {"name": "Dan", "stage": None, "score": 5}
    results = adapter.write(
        C,
        [
            Write("5", "create", new),
            Write("5", "update", {"score": 6}, expected={"score": 5}),
            Write("1", "delete", expected={"score": 10}),
            Write("1", "create", {**SEED["1"], "score": 1}),
            Write("5", "update", {"score": 7}, expected={"score": 5}),
        ],
    )
    assert [r.outcome for r in results] == ["applied"] * 4 + ["stale"]
    assert results[1].before == new and results[3].before is None
    assert (results[4].field, results[4].actual) == ("score", 6)
    assert adapter.read(C, ["1", "5"]) == {
        "1": {**SEED["1"], "score": 1},
        "5": {**new, "score": 6},
    }


def test_an_unknown_collection_is_refused(tmp_path: Path) -> None:
    adapter = contacts_adapter(tmp_path, "csv")
    with pytest.raises(AdapterError, match="no collection 'deals'"):
        adapter.read("deals", ["1"])


def test_a_rewrite_keeps_the_file_mode(tmp_path: Path) -> None:
    adapter = seed_contacts(tmp_path, "csv", SEED)
    (tmp_path / "contacts.csv").chmod(0o640)
    adapter.write(C, [Write("1", "update", {"score": 1})])
    assert (tmp_path / "contacts.csv").stat().st_mode & 0o777 == 0o640


# Sorted files -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hand_edited_unsorted_file_is_refused_while_streaming(tmp_path: Path, fmt: str) -> None:
    adapter = seed_contacts(tmp_path, fmt, SEED)
    path = tmp_path / f"contacts.{fmt}"
    lines = path.read_bytes().splitlines(keepends=True)
    body = lines[1:] if fmt == "csv" else lines
    body.insert(0, body.pop())  # key "2" moved first, as after a spreadsheet "sort by name"
    path.write_bytes(b"".join(lines[:1] + body if fmt == "csv" else body))
    edited = path.read_bytes()

    message = r"key '1' comes after '2'.*FileAdapter\.sort\('contacts'\)"
    with pytest.raises(AdapterError, match=message):
        list(adapter.scan(C))
    with pytest.raises(AdapterError, match=message):
        adapter.read(C, ["10"])
    with pytest.raises(AdapterError, match=message):
        adapter.write(C, [Write("3", "create", SEED["1"])])
    assert path.read_bytes() == edited
    assert names_in(tmp_path) == [f"contacts.{fmt}", f"contacts.{fmt}.lock"]

    adapter.sort(C)
    assert list(adapter.scan(C)) == sorted(SEED.items())


@pytest.mark.parametrize("fmt", FORMATS)
def test_sort_merges_runs_and_refuses_a_duplicate_key(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ordering, "SORT_RUN_ROWS", 64)  # 1,000 rows: 16 runs to merge
    records = {str(i): {"name": f"n{i}", "stage": None, "score": i} for i in range(1000)}
    shuffled = list(records.items())
    random.Random(7).shuffle(shuffled)
    if fmt == "csv":
        rows = [[key, r["name"], "", r["score"]] for key, r in shuffled]
        write_csv(tmp_path / "contacts.csv", ["id", *CONTACT_COLUMNS], rows)
    else:
        write_jsonl(tmp_path / "contacts.jsonl", [{"id": key, **r} for key, r in shuffled])
    adapter = contacts_adapter(tmp_path, fmt)

    adapter.sort(C)
    assert list(adapter.scan(C)) == sorted(records.items())

    path = tmp_path / f"contacts.{fmt}"
    with open(path, "ab") as out:
        out.write(b"5,again,,5\r\n" if fmt == "csv" else b'{"id": "5", "name": "again"}\n')
    with pytest.raises(AdapterError, match="key '5' comes after '999'"):
        list(adapter.scan(C))
    before = path.read_bytes()
    with pytest.raises(AdapterError, match="key '5' appears twice"):
        adapter.sort(C)
    assert path.read_bytes() == before
    assert names_in(tmp_path) == [f"contacts.{fmt}", f"contacts.{fmt}.lock"]


# Atomic replacement -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_replace_leaves_the_original_file_and_no_temporary_file(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = seed_contacts(tmp_path, fmt, SEED)
    original = (tmp_path / f"contacts.{fmt}").read_bytes()

    def crash(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(AdapterError, match="No space left"):
        adapter.write(C, [Write("1", "update", {"score": 11}), Write("3", "create", SEED["1"])])
    assert (tmp_path / f"contacts.{fmt}").read_bytes() == original
    assert names_in(tmp_path) == [f"contacts.{fmt}", f"contacts.{fmt}.lock"]
    assert dict(adapter.scan(C)) == SEED


KILLED_WRITER = """
import os, signal, sys
from adapters import files
from adapters.files.jsonl_table import JsonLinesTable
from ledger.ports import Write

start = JsonLinesTable.start

def dies_half_way(self, out):
    put = start(self, out)
    written = [0]

    def put_then_die(raw):
        put(raw)
        written[0] += 1
        if written[0] == 5_000:
            out.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return put_then_die

JsonLinesTable.start = dies_half_way
adapter = files.JsonLinesAdapter("exports", sys.argv[1], {"contacts": files.JsonLinesCollection()})
adapter.write("contacts", [Write(f"{i:05d}", "update", {"score": -1}) for i in range(10_000)])
"""


def test_a_writer_killed_mid_write_leaves_the_original_file_intact(tmp_path: Path) -> None:
    adapter = contacts_adapter(tmp_path, "jsonl")
    records = {f"{i:05d}": {"name": f"n{i}", "stage": None, "score": i} for i in range(10_000)}
    adapter.write(C, [Write(key, "create", record) for key, record in records.items()])
    path = tmp_path / "contacts.jsonl"
    original = path.read_bytes()

    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(tmp_path)],
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    assert path.read_bytes() == original
    (leftover,) = [name for name in names_in(tmp_path) if name.endswith(".tmp")]
    assert leftover.startswith(".contacts.jsonl.")  # hidden, half written, never read
    assert 0 < (tmp_path / leftover).stat().st_size < len(original)
    assert adapter.read(C, ["04999", "09999"]) == {
        "04999": records["04999"],
        "09999": records["09999"],
    }

    (result,) = adapter.write(C, [Write("00000", "update", {"score": 1})])
    assert result.outcome == "applied"
    assert names_in(tmp_path) == ["contacts.jsonl", "contacts.jsonl.lock"]  # swept under lock


# Locking between processes ----------------------------------------------------------------

SPAWN = multiprocessing.get_context("spawn")
INCREMENTS = 100


def _increment(directory: str, fmt: str, barrier: Any, reports: Any) -> None:
    """Child: INCREMENTS compare-and-set increments of the counter, retrying when stale.

    fsync is switched off in the child: this test is about the lock, not durability, and
    200 rewrites with two fsyncs each would take seconds on a real disk."""
    try:
        os.fsync = lambda fd: None
        adapter = contacts_adapter(Path(directory), fmt)
        stale = 0
        barrier.wait(60)
        for _ in range(INCREMENTS):
            while True:
                score = adapter.read(C, ["counter"])["counter"]["score"]
                (result,) = adapter.write(
                    C, [Write("counter", "update", {"score": score + 1}, expected={"score": score})]
                )
                if result.outcome == "applied":
                    break
                assert result.outcome == "stale", result
                stale += 1
        reports.put(("ok", stale))
    except BaseException:
        reports.put(("error", traceback.format_exc()))
        raise


def _reports_of(children: list[Any], reports: Any, within: float = 60.0) -> list[Any]:
    """One report per child; fails at once if a child dies without reporting."""
    outcomes: list[Any] = []
    deadline = time.monotonic() + within
    while len(outcomes) < len(children):
        try:
            outcomes.append(reports.get(timeout=0.2))
        except queue.Empty:
            if any(child.exitcode not in (None, 0) for child in children):
                with suppress(queue.Empty):  # a report queued just before the child exited
                    while len(outcomes) < len(children):
                        outcomes.append(reports.get(timeout=1))
                errors = [detail for status, detail in outcomes if status != "ok"]
                codes = [child.exitcode for child in children]
                pytest.fail(f"a writer process died (exit codes {codes}): {errors}")
            if time.monotonic() > deadline:
                pytest.fail(f"the writer processes did not all report within {within} s")
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv"])  # the lock is the same code for both formats
def test_the_lock_serialises_writers_in_two_processes(tmp_path: Path, fmt: str) -> None:
    adapter = contacts_adapter(tmp_path, fmt)
    adapter.write(C, [Write("counter", "create", {"name": "counter", "stage": None, "score": 0})])
    barrier = SPAWN.Barrier(2)
    reports = SPAWN.Queue()
    children = [
        SPAWN.Process(target=_increment, args=(str(tmp_path), fmt, barrier, reports))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    try:
        outcomes = _reports_of(children, reports)
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert not errors, errors[0]
    assert [child.exitcode for child in children] == [0, 0]
    assert adapter.read(C, ["counter"])["counter"]["score"] == 2 * INCREMENTS


# Bulk writes ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bulk_write_of_10000_records_is_one_rewrite(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    replaced: list[tuple[Any, ...]] = []
    real_replace = os.replace

    def counting_replace(*args: Any) -> None:
        replaced.append(args)
        real_replace(*args)

    monkeypatch.setattr(os, "replace", counting_replace)
    adapter = contacts_adapter(tmp_path, fmt)
    keys = [str(i) for i in range(10_000)]
    random.Random(3).shuffle(keys)  # given in any order; results come back in that order

    created = adapter.write(
        C, [Write(k, "create", {"name": f"n{k}", "stage": None, "score": int(k)}) for k in keys]
    )
    assert [r.key for r in created] == keys and {r.outcome for r in created} == {"applied"}
    assert len(replaced) == 1

    updated = adapter.write(
        C,
        [Write(k, "update", {"score": 0}, expected={"score": int(k) % 2 * int(k)}) for k in keys],
    )
    outcomes = {k: r.outcome for k, r in zip(keys, updated, strict=True)}
    assert outcomes["3"] == "applied" and outcomes["4"] == "stale"
    assert len(replaced) == 2

    stale_only = adapter.write(C, [Write("4", "update", {"score": 0}, expected={"score": 0})])
    assert stale_only[0].outcome == "stale" and len(replaced) == 2  # nothing applied: no rewrite

    scanned = list(adapter.scan(C))
    assert [k for k, _ in scanned] == sorted(keys)
    assert sum(1 for _, r in scanned if r["score"] == 0) == 5_000 + 1  # odd keys and "0"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_key_on_two_rows_is_refused_before_anything_is_written(fmt: str, tmp_path: Path) -> None:
    """Two rows naming one record (a hand edit; in JSON Lines ``5`` and ``"5"`` too): a run is
    refused naming the line, the file is left as it was, no intent is left pending; and two
    creates of one key in one write make one row."""
    path = tmp_path / f"contacts.{fmt}"
    if fmt == "csv":
        write_csv(path, ["id", *CONTACT_COLUMNS], [["5", "Ann", "", 1], ["5", "Bob", "", 2]])
    else:
        path.write_text('{"id": 5, "name": "Ann"}\n{"id": "5", "name": "Bob"}\n')
    adapter = contacts_adapter(tmp_path, fmt)
    before = path.read_bytes()
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    change = Change(Address(adapter.system, C, "5"), "update", values={"name": "Cat"})
    with (
        pytest.raises(AdapterError, match=r"line [23]: key '5' appears twice"),
        Run(ledger, "b1") as run,
    ):
        run.apply(Target(adapter, C), [change])
    assert path.read_bytes() == before
    assert ledger.index.pending("b1") == []
    ledger.close()

    path.unlink()
    first, second = adapter.write(
        C, [Write("7", "create", {"name": "Dan"}), Write("7", "create", {"name": "Eve"})]
    )
    assert (first.outcome, second.outcome, second.field) == ("applied", "stale", "(record)")
    assert [(key, record["name"]) for key, record in adapter.scan(C)] == [("7", "Dan")]
