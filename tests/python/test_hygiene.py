"""The manifest hygiene check: it passes on the project and catches what it should."""

from __future__ import annotations

import copy
import json
from typing import Any

from support import CubesBuild

from campaign_cubes import hygiene


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
