"""ledger.toml: systems are built from one file, and every bad setting names its key."""

import re
import sqlite3

import pytest

from adapters.http import HttpAdapter
from adapters.sql import SqlAdapter
from ledger.config import open_adapter
from ledger.errors import ConfigurationError


def config(tmp_path, text):
    path = tmp_path / "ledger.toml"
    path.write_text(text)
    return str(path)


def test_file_systems_are_built_relative_to_the_config(tmp_path):
    from adapters.files import FileAdapter

    path = config(
        tmp_path,
        """
[systems.sheets]
type = "files"
directory = "sheets"
collections.leads = { format = "csv", file = "leads.csv", key = "id", columns = { score = "int" } }
collections.log = { format = "jsonl", key = ["region", "id"] }
""",
    )
    sheets = open_adapter("sheets", path)
    assert isinstance(sheets, FileAdapter) and sheets.directory == tmp_path / "sheets"
    (tmp_path / "sheets").mkdir()
    from ledger.ports import Write

    (result,) = sheets.write("leads", [Write("7", "create", {"score": 3})])
    assert result.outcome == "applied"
    assert sheets.read("leads", ["7"]) == {"7": {"score": 3}}


def test_sql_and_http_systems_are_built_from_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    sqlite3.connect(tmp_path / "crm.db").close()
    path = config(
        tmp_path,
        f"""
[systems.crm]
type = "sql"
url = "sqlite:///{tmp_path / "crm.db"}"
collections.contacts = {{ table = "contacts", key = "id" }}

[systems.api]
type = "http"
base_url = "http://127.0.0.1:9"
headers = {{ Authorization = "Bearer ${{CRM_TOKEN}}" }}
collections.contacts = {{ path = "/contacts" }}
""",
    )
    with sqlite3.connect(tmp_path / "crm.db") as crm_db:  # the adapter opens the table
        crm_db.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY)")
    crm = open_adapter("crm", path)
    assert isinstance(crm, SqlAdapter) and crm.routes["contacts"].key == ("id",)
    api = open_adapter("api", path)
    assert isinstance(api, HttpAdapter)
    crm.close()
    api.close()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[systems.crm]\nurl = 'x'\n", "systems.crm.type is missing"),
        ("[systems.crm]\ntype = 'ftp'\n", "systems.crm.type 'ftp' is not one of"),
        (
            "[systems.crm]\ntype = 'sql'\ncollections.c = {table = 't'}\n",
            "systems.crm.url is missing",
        ),
        (
            "[systems.api]\ntype = 'http'\nbase_url = 'http://x'\ncollections.c = {pth = '/c'}\n",
            "systems.api.collections.c.pth is not a setting",
        ),
        ("systems = 1\n", "no [systems.NAME] table"),
        ("[systems\n", "not valid TOML"),
    ],
)
def test_a_bad_setting_names_its_key(tmp_path, text, message):
    path = config(tmp_path, text)
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace(".", r"\.")):
        open_adapter("crm" if "crm" in text else "api", path)


def test_a_missing_file_or_system_is_explained(tmp_path):
    with pytest.raises(ConfigurationError, match="no configuration file"):
        open_adapter("crm", str(tmp_path / "nope.toml"))
    path = config(tmp_path, "[systems.crm]\ntype = 'sql'\nurl = 'sqlite://'\ncollections = {}\n")
    with pytest.raises(ConfigurationError, match=r"no system 'erp'.*configured: crm"):
        open_adapter("erp", path)


def test_rollback_contracts_are_read_per_collection(tmp_path):
    from datetime import timedelta

    from ledger.config import load_contracts
    from ledger.rollback import Contract

    path = config(
        tmp_path,
        """
[systems.crm]
type = "sql"
url = "sqlite://"
[systems.crm.collections.contacts]
table = "contacts"
rollback = { protected = ["email"], window = "7d", owner = "sales-ops" }
[systems.crm.collections.emails]
rollback = { repair = "notify", owner = "support" }
""",
    )
    assert load_contracts(path) == {
        ("crm", "contacts"): Contract(("email",), timedelta(days=7), None, "sales-ops"),
        ("crm", "emails"): Contract(repair="notify", owner="support"),
    }
    # the route is built without its rollback contract; opening checks the table exists
    with pytest.raises(ConfigurationError, match="crm/contacts: table 'contacts' does not exist"):
        open_adapter("crm", path)
    bad = config(
        tmp_path,
        '[systems.crm]\ntype = "sql"\nurl = "sqlite://"\n'
        'collections.c = { rollback = { window = "a week" } }\n',
    )
    with pytest.raises(ConfigurationError, match=r"collections\.c\.rollback\.window 'a week'"):
        load_contracts(bad)


SHOP = """
[systems.shop]
type = "sql"
url = "sqlite://"
collections.orders = { table = "orders", key = ["region", "id"] }
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (
            SHOP.replace('key = ["region", "id"]', 'keys = ["region", "id"]'),
            "systems.shop.collections.orders.keys is not a setting; expected some of: key, "
            "schema, table",
        ),
        (SHOP.replace('url = "sqlite://"', 'url = "sqlite://"\nurll = "x"'), "systems.shop.urll"),
        (SHOP + "[workflows.sync]\npaused = true\n", "workflows is not a setting"),
        (
            SHOP + 'collections.items = { rollback = { windw = "7d" } }\n',
            "systems.shop.collections.items.rollback.windw is not a setting",
        ),
        (
            SHOP + "collections.items = { key = 5 }\n",
            "systems.shop.collections.items.key must be a list of text, not 5",
        ),
        (
            SHOP + 'collections.items = { rollback = { protected = "email" } }\n',
            "collections.items.rollback.protected must be a list of text",
        ),
        (
            SHOP + '[systems.api]\ntype = "http"\nbase_url = "http://x"\ntimeout = "5s"\n'
            "collections = {}\n",
            "systems.api.timeout must be a number, not '5s'",
        ),
        (
            SHOP + '[systems.api]\ntype = "http"\nbase_url = "http://x"\n'
            'collections.c = { path = "/c", assigns_ids = "yes" }\n',
            "systems.api.collections.c.assigns_ids must be true or false",
        ),
        (
            SHOP + '[systems.sheets]\ntype = "files"\ndirectory = "."\n'
            'collections.c = { format = "csv", empty = "none" }\n',
            "systems.sheets.collections.c.empty must be one of 'null', 'text'",
        ),
        (
            SHOP + '[systems.sheets]\ntype = "files"\ndirectory = "."\n'
            'collections.c = { columns = { score = "integer" } }\n',
            "systems.sheets.collections.c.columns.score: unknown type 'integer'",
        ),
    ],
)
def test_an_unknown_or_mistyped_setting_anywhere_is_refused_naming_its_key(tmp_path, text, message):
    """A typo never falls back to a default (`keys` for `key` made the SQL adapter key on
    `id` alone, and one update changed three rows). Any system's typo stops every command."""
    from ledger.config import load_contracts, open_adapters

    path = config(tmp_path, text)
    for read in (lambda: open_adapter("shop", path), lambda: open_adapters(path)):
        with pytest.raises(ConfigurationError) as refused:
            read()
        assert message in str(refused.value)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_contracts(path)


def test_a_relative_sqlite_path_is_relative_to_the_configuration_file(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    with sqlite3.connect(folder / "crm.db") as db:
        db.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY, stage TEXT)")
        db.execute("INSERT INTO contacts VALUES ('1', 'lead')")
    path = config(
        folder,
        SHOP.replace('"sqlite://"', '"sqlite:///crm.db"').replace(
            'collections.orders = { table = "orders", key = ["region", "id"] }',
            'collections.contacts = { key = "id" }',
        ),
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shop = open_adapter("shop", path)
    try:
        assert shop.read("contacts", ["1"]) == {"1": {"stage": "lead"}}
    finally:
        shop.close()
    assert list(elsewhere.iterdir()) == []


def test_a_sqlite_target_that_does_not_exist_is_refused_not_created(tmp_path):
    path = config(tmp_path, SHOP.replace('"sqlite://"', '"sqlite:///shop.db"'))
    with pytest.raises(ConfigurationError, match=r"systems\.shop\.url: no SQLite database at "):
        open_adapter("shop", path)
    assert not (tmp_path / "shop.db").exists()


@pytest.mark.postgres
def test_a_postgresql_url_uses_the_installed_psycopg_3_driver(tmp_path, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE TABLE contacts (id text PRIMARY KEY, stage text)")
        db.execute("INSERT INTO contacts VALUES ('1', 'lead')")
    assert postgres_url.startswith("postgresql://")
    path = config(
        tmp_path,
        f'[systems.crm]\ntype = "sql"\nurl = "{postgres_url}"\n'
        'collections.contacts = { key = "id" }\n',
    )
    crm = open_adapter("crm", path)
    try:
        assert crm.read("contacts", ["1"]) == {"1": {"stage": "lead"}}
    finally:
        crm.close()


def test_a_driver_that_is_not_installed_is_a_configuration_error(tmp_path):
    path = config(
        tmp_path,
        '[systems.crm]\ntype = "sql"\nurl = "postgresql+psycopg2://u@127.0.0.1/crm"\n'
        "collections = {}\n",
    )
    with pytest.raises(ConfigurationError, match=r"systems\.crm\.url: .*psycopg2.*psycopg 3"):
        open_adapter("crm", path)


def test_a_configuration_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "ledger.toml"
    path.write_bytes(b'[systems.crm]\ntype = "sql"\nurl = "sqlite:///caf\xe9.db"\n')
    with pytest.raises(ConfigurationError, match=r"is not UTF-8 text \(line 3: byte 0xe9\)"):
        open_adapter("crm", str(path))
