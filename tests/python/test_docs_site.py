"""The docs site: one offline page, what it shows (lineage, exposures, grain, schedule,
unconfirmed codes), descriptions written once and persisted as PostgreSQL comments,
and a server that listens on loopback only."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from campaign_cubes import docs_site
from support import CubesBuild

ROOT = Path(__file__).resolve().parents[2]
AGGREGATES = {
    "agg_nmspropositionrcp_full": "agg_nmspropositionrcp_full",
    "agg_messageCenter_full": "agg_messagecenter_full",
}
REPORTS = {"offer_analysis", "message_center_history", "message_center_service_level", "message_center_processing_time"}

_SITES: dict[str, tuple[Path, Path]] = {}


def site_for(build: CubesBuild, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(page, dbt work dir) of the docs of `build`, generated once per session."""
    if build.schema not in _SITES:
        base = tmp_path_factory.mktemp("docs")
        page = docs_site.generate_docs(
            base / "site",
            {"CAMPAIGN_CUBES_SCHEMA": build.schema},
            dbt_vars=json.dumps(build.vars),
            work_dir=base / "work",
        )
        _SITES[build.schema] = (page, base / "work")
    return _SITES[build.schema]


@pytest.fixture(scope="module")
def docs(default_build: CubesBuild, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    page, work_dir = site_for(default_build, tmp_path_factory)
    return page, json.loads((work_dir / "target" / "manifest.json").read_text())


def node(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in manifest["nodes"].values() if n["name"] == name)


@pytest.mark.slow
def test_site_is_one_offline_page(docs: tuple[Path, dict[str, Any]]) -> None:
    page, _ = docs
    assert page.name == "index.html" and sorted(p.name for p in page.parent.iterdir()) == ["index.html"]
    text = page.read_text()
    assert docs_site.remote_references(text) == []
    # dbt's usage tracker is the page's only remote script; it must be off
    assert '"send_anonymous_usage_stats": false' in text
    assert '"send_anonymous_usage_stats": true' not in text
    # manifest and catalog are built in (the catalog knows the published tables' columns)
    assert "agg_messagecenter_full" in text and '"avg_processing_seconds"' in text


def test_remote_references_are_detected() -> None:
    assert docs_site.remote_references('<script src="https://cdn.example/x.js"></script>')
    assert docs_site.remote_references('<link rel="stylesheet" href="//fonts.example/css">')
    assert docs_site.remote_references("<style>@import url('https://fonts.example/a.css');</style>")
    assert not docs_site.remote_references('<a href="https://getdbt.com">dbt</a><img src="charts/a.png">')


@pytest.mark.slow
def test_lineage_runs_from_campaign_tables_through_aggregates_to_reports(docs: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = docs
    parents = manifest["parent_map"]

    def ancestors(unique_id: str) -> set[str]:
        found: set[str] = set()
        todo = [unique_id]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent not in found:
                    found.add(parent)
                    todo.append(parent)
        return found

    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert set(exposures) == REPORTS
    sources = {
        f"source.campaign_cubes.campaign.{t}" for t in ("nmspropositionrcp", "nmsoffer", "nmsofferspace", "nmsdelivery")
    }
    assert sources <= ancestors(exposures["offer_analysis"]["unique_id"])
    assert "source.campaign_cubes.campaign.nmseventhisto" in ancestors(exposures["message_center_history"]["unique_id"])


@pytest.mark.slow
def test_exposures_have_owner_description_and_what_they_read(docs: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = docs
    for exposure in manifest["exposures"].values():
        assert exposure["owner"]["name"] and "@" in exposure["owner"]["email"], exposure["name"]
        assert exposure["label"] and "**Reads**" in exposure["description"], exposure["name"]
        read = {n.split(".")[-1] for n in exposure["depends_on"]["nodes"]}
        assert read & set(AGGREGATES), exposure["name"]
        for column in re.findall(r"`(\w+)`", exposure["description"].split("**Reads**")[1]):
            if column in {"agg_nmspropositionrcp_full", "agg_messagecenter_full", "is_error", "processed"}:
                continue
            model = "agg_nmspropositionrcp_full" if "agg_nmspropositionrcp_full" in read else "agg_messageCenter_full"
            assert column in node(manifest, model)["columns"], f"{exposure['name']} reads unknown column {column}"


@pytest.mark.slow
def test_aggregates_state_grain_and_schedule(docs: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = docs
    jobs = tomllib.loads((ROOT / "orchestrate.toml").read_text())["jobs"]
    zone = docs_site.schedule_zone()
    for model in AGGREGATES:
        spec = node(manifest, model)
        description = spec["description"]
        schedule = spec["config"]["meta"]["schedule"]
        assert schedule["cron"] == jobs[model]["cron"], "meta.schedule drifted from orchestrate.toml"
        assert f"cron `{jobs[model]['cron']}`" in description
        assert schedule["timezone"] == zone and f"**Zone:** {zone}." in description
        assert "**Grain:** one row per" in description
        for column in spec["config"]["meta"]["audit"]["grain"]:
            assert f"`{column}`" in description
        assert "`UTC`" in description  # the reporting time zone of this build


def seed_rows(name: str) -> list[dict[str, str]]:
    with (ROOT / "seeds" / f"{name}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize("seed", ["campaign_channels", "campaign_proposition_statuses", "campaign_event_statuses"])
def test_seed_docs_flag_exactly_the_unconfirmed_codes(docs: tuple[Path, dict[str, Any]], seed: str) -> None:
    _, manifest = docs
    description = node(manifest, seed)["description"]
    code_column = next(c for c in seed_rows(seed)[0] if c.endswith("_code"))
    name_column = next(c for c in seed_rows(seed)[0] if c.endswith("_name"))
    for row in seed_rows(seed):
        unconfirmed = row["is_confirmed"] == "false"
        line = next((ln for ln in description.splitlines() if ln.startswith(f"| `{row[code_column]}` |")), None)
        assert line is not None, f"{seed}: code {row[code_column]} missing from the docs table"
        assert f"| {row[name_column]} |" in line
        assert ("unconfirmed" in line) == unconfirmed, line
        if unconfirmed:
            assert f"`{row[code_column]}` {row[name_column]}" in description.split("|")[0]
    if all(row["is_confirmed"] == "true" for row in seed_rows(seed)):
        assert "**Unconfirmed codes:** none" in description


def description_texts(node: yaml.Node, seen: set[int]) -> list[str]:
    """Every `description:` scalar of a YAML node tree; an anchor's reuse (alias) counts once."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        found: list[str] = []
        for key, value in node.value:
            if key.value == "description" and isinstance(value, yaml.ScalarNode):
                found.append(" ".join(value.value.split()))
            else:
                found += description_texts(value, seen)
        return found
    if isinstance(node, yaml.SequenceNode):
        return [text for item in node.value for text in description_texts(item, seen)]
    return []


def test_shared_text_is_written_once() -> None:
    """A description used in two places is a {% docs %} block, not two copies."""
    texts: Counter[str] = Counter()
    for path in sorted([*ROOT.glob("models/**/*.yml"), *ROOT.glob("seeds/*.yml")]):
        tree = yaml.compose(path.read_text())
        if tree is None:  # an empty file
            continue
        texts.update(text for text in description_texts(tree, set()) if "{{ doc(" not in text)
    repeated = [text for text, times in texts.items() if times > 1]
    assert repeated == [], "write these once, in a {% docs %} block: " + "; ".join(repeated)


@pytest.mark.slow
def test_descriptions_are_postgresql_comments(
    default_build: CubesBuild, pg_conn: Any, docs: tuple[Path, dict[str, Any]]
) -> None:
    _, manifest = docs
    with pg_conn.cursor() as cursor:
        cursor.execute(
            """select col_description(c.oid, a.attnum), obj_description(c.oid, 'pg_class')
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               join pg_attribute a on a.attrelid = c.oid
               where n.nspname = %s and c.relname = 'agg_messagecenter_full' and a.attname = 'events'""",
            (default_build.schema,),
        )
        column_comment, table_comment = cursor.fetchone()
    events = node(manifest, "agg_messageCenter_full")["columns"]["events"]["description"]
    assert column_comment == events and "Additive" in column_comment
    assert table_comment and "one row per event date × channel × status × event type" in table_comment


@pytest.mark.slow
def test_server_listens_on_loopback_only(docs: tuple[Path, dict[str, Any]]) -> None:
    page, _ = docs
    server = docs_site.docs_server(page.parent, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-cache"
            assert b"agg_messagecenter_full" in response.read()
    finally:
        server.shutdown()
        server.server_close()


def test_server_refuses_a_folder_without_site(tmp_path: Path) -> None:
    with pytest.raises(docs_site.DocsError, match="generate it first"):
        docs_site.docs_server(tmp_path, 0)


def test_docs_vars_keep_the_callers_and_add_the_zone() -> None:
    merged = json.loads(
        docs_site.docs_vars(
            "{campaign_schema: public, reporting_timezone: Europe/Paris}",
            "Europe/Helsinki",
            {"agg_messageCenter_full": "5 4 * * *"},
        )
    )
    assert merged == {
        "campaign_schema": "public",
        "reporting_timezone": "Europe/Paris",
        "schedule_timezone": "Europe/Helsinki",
        "schedule_crons": {"agg_messageCenter_full": "5 4 * * *"},
    }
    assert json.loads(docs_site.docs_vars(None, None)) == {}


OTHER_ZONE = "Pacific/Chatham"  # neither the host's zone nor orchestrate.toml's
OTHER_CRONS = {"agg_messageCenter_full": "17 4 * * 2", "agg_nmspropositionrcp_full": "41 5 * * 6"}


@pytest.fixture(scope="module")
def site_of_another_config(default_build: CubesBuild, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page `orchestrate.py --config <another toml> docs` writes."""
    base = tmp_path_factory.mktemp("docs-config")
    config = base / "other.toml"
    config.write_text(
        f'timezone = "{OTHER_ZONE}"\n'
        + "".join(f'[jobs.{job}]\ncron = "{cron}"\nselector = "{job}"\n' for job, cron in OTHER_CRONS.items())
    )
    env = {key: value for key, value in os.environ.items() if key != "CAMPAIGN_CUBES_TIMEZONE"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "orchestrate.py"),
            "--config",
            str(config),
            "docs",
            "--out",
            str(base / "site"),
            "--vars",
            json.dumps(default_build.vars),
        ],
        env={**env, "CAMPAIGN_CUBES_SCHEMA": default_build.schema},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return (base / "site" / "index.html").read_text()


@pytest.mark.slow
def test_docs_shows_the_zone_of_its_config(site_of_another_config: str) -> None:
    assert site_of_another_config.count(f"**Zone:** {OTHER_ZONE}.") == len(AGGREGATES)
    assert docs_site.schedule_zone() != OTHER_ZONE


@pytest.mark.slow
def test_docs_shows_the_crons_of_its_config(site_of_another_config: str) -> None:
    for cron in OTHER_CRONS.values():
        assert f"cron `{cron}`" in site_of_another_config


def test_builds_in_one_work_dir_are_serialised(tmp_path: Path) -> None:
    order: list[str] = []
    entered = threading.Event()

    def second() -> None:
        entered.set()
        with docs_site._exclusive(tmp_path):
            order.append("second")

    with docs_site._exclusive(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        entered.wait()
        thread.join(timeout=0.5)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]


@pytest.mark.slow
def test_failed_generation_keeps_the_previous_page(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    previous = tmp_path / "site" / "index.html"
    previous.write_text("previous site")
    nowhere = {"PGHOST": "127.0.0.1", "PGPORT": "1"}  # nothing listens on port 1
    with pytest.raises(docs_site.DocsError, match="dbt docs generate failed"):
        docs_site.generate_docs(tmp_path / "site", nowhere, work_dir=tmp_path / "work")
    assert previous.read_text() == "previous site"
