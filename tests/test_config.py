"""ledger.toml: systems are built from one file, and every bad setting names its key."""

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
    from adapters.protocol import Write

    (result,) = sheets.write("leads", [Write("7", "create", {"score": 3})])
    assert result.outcome == "applied"
    assert sheets.read("leads", ["7"]) == {"7": {"score": 3}}


def test_sql_and_http_systems_are_built_from_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
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
    assert open_adapter("crm", path).routes["contacts"].table == "contacts"
    bad = config(
        tmp_path,
        '[systems.crm]\ntype = "sql"\nurl = "sqlite://"\n'
        'collections.c = { rollback = { window = "a week" } }\n',
    )
    with pytest.raises(ConfigurationError, match=r"collections\.c\.rollback\.window 'a week'"):
        load_contracts(bad)
