"""The manifest hygiene check: it passes on the project and catches what it should."""

from __future__ import annotations

import copy
import json
from typing import Any

from campaign_cubes import hygiene
from support import CubesBuild


def manifest_of(build: CubesBuild) -> dict[str, Any]:
    return json.loads((build.run.log_file.parent.parent / "target" / "manifest.json").read_text())


def test_project_is_clean(default_build: CubesBuild) -> None:
    assert hygiene.problems(manifest_of(default_build)) == []


def test_catches_missing_docs_grain_and_misplaced_source(default_build: CubesBuild) -> None:
    manifest = copy.deepcopy(manifest_of(default_build))
    mart = next(n for n in manifest["nodes"].values() if n["name"] == "agg_messageCenter_full")
    mart["description"] = "The Message Center cube."
    mart["columns"]["events"]["description"] = ""
    mart["depends_on"]["nodes"].append("source.campaign_cubes.campaign.nmseventhisto")
    found = hygiene.problems(manifest)
    assert "model agg_messageCenter_full: its description does not state the grain ('One row per ...')" in found
    assert "model agg_messageCenter_full: column events has no description" in found
    assert "model agg_messageCenter_full: reads source() outside staging" in found


def test_an_audited_tag_must_name_what_the_audit_checks(default_build: CubesBuild) -> None:
    manifest = manifest_of(default_build)
    tagged = sorted(
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and hygiene.AUDITED_TAG in node["tags"]
    )
    assert len(tagged) == 8, tagged  # per cube: the grain test and not_null on its three non-nullable keys
    manifest = copy.deepcopy(manifest)
    label_test = next(
        n for n in manifest["nodes"].values() if n["name"] == "not_null_agg_nmspropositionrcp_full_channel_label"
    )
    label_test["tags"].append(hygiene.AUDITED_TAG)
    assert hygiene.problems(manifest) == [
        "test not_null_agg_nmspropositionrcp_full_channel_label: tagged audited, but the publication's audit"
        " of agg_nmspropositionrcp_full does not check it (nightly jobs would never run it)"
    ]
