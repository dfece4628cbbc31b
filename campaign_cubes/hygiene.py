"""Project hygiene over dbt's manifest: the checks dbt-project-evaluator would make.

Usage: python -m campaign_cubes.hygiene [target/manifest.json]
With catalog.json beside the manifest (dbt docs generate), it also checks that every
column the built relations have is documented. Prints one line per problem and
exits 1 if there is any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Where each layer lives and how its models are named.
LAYERS = {
    "models/staging/campaign/base/": "base_campaign__",
    "models/staging/campaign/": "stg_campaign__",
    "models/intermediate/": "int_",
    "models/marts/": "agg_",
}
GRAIN_TEST = "unique_combination_of_columns"
# Tests the publication's audit enforces before publishing; nightly jobs skip them.
AUDITED_TAG = "audited"


def _documented(node: dict[str, Any]) -> bool:
    return bool((node.get("description") or "").strip())


def _column_problems(kind: str, name: str, node: dict[str, Any]) -> list[str]:
    return [
        f"{kind} {name}: column {column} has no description"
        for column, spec in node.get("columns", {}).items()
        if not _documented(spec)
    ]


def audited_by_publication(test: dict[str, Any], audit: dict[str, Any]) -> bool:
    """Whether the publication's audit (meta.audit) checks what `test` checks: grain unique, keys not NULL."""
    grain = audit.get("grain", [])
    kwargs = test["test_metadata"].get("kwargs", {})
    if test["test_metadata"]["name"] == GRAIN_TEST:
        return sorted(kwargs.get("combination_of_columns", [])) == sorted(grain)
    required = set(grain) - set(audit.get("nullable_grain", []))
    return test["test_metadata"]["name"] == "not_null" and kwargs.get("column_name") in required


def audited_tag_problems(node: dict[str, Any], tests: list[dict[str, Any]]) -> list[str]:
    audit = node["config"].get("meta", {}).get("audit", {})
    return [
        f"test {test['name']}: tagged {AUDITED_TAG}, but the publication's audit of {node['name']}"
        " does not check it (nightly jobs would never run it)"
        for test in tests
        if AUDITED_TAG in test.get("tags", []) and not audited_by_publication(test, audit)
    ]


def model_problems(node: dict[str, Any], tests: list[dict[str, Any]]) -> list[str]:
    name, path = node["name"], node["original_file_path"]
    problems: list[str] = []
    prefixes = [prefix for folder, prefix in LAYERS.items() if path.startswith(folder)]
    if not prefixes or not name.startswith(prefixes[0]):
        problems.append(f"model {name}: {path} is not where its layer's models live, or misnamed")
    if "One row per" not in (node.get("description") or "") and "one row per" not in (node.get("description") or ""):
        problems.append(f"model {name}: its description does not state the grain ('One row per ...')")
    if (
        node["depends_on"].get("nodes")
        and any(dep.startswith("source.") for dep in node["depends_on"]["nodes"])
        and not path.startswith("models/staging/")
    ):
        problems.append(f"model {name}: reads source() outside staging")
    if not node.get("columns"):
        problems.append(f"model {name}: no columns documented")
    problems += _column_problems("model", name, node)
    if path.startswith("models/marts/"):
        if not node["config"].get("contract", {}).get("enforced"):
            problems.append(f"model {name}: published without an enforced contract")
        if not any(test["test_metadata"]["name"] == GRAIN_TEST for test in tests):
            problems.append(f"model {name}: no grain test ({GRAIN_TEST})")
    return problems + audited_tag_problems(node, tests)


def problems(manifest: dict[str, Any]) -> list[str]:
    tests_of: dict[str, list[dict[str, Any]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node.get("test_metadata"):
            for parent in node["depends_on"]["nodes"]:
                tests_of.setdefault(parent, []).append(node)
    found: list[str] = []
    for unique_id, node in manifest["nodes"].items():
        if node["package_name"] != manifest["metadata"].get("project_name", node["package_name"]):
            continue
        if node["resource_type"] == "model":
            found += model_problems(node, tests_of.get(unique_id, []))
        elif node["resource_type"] == "seed":
            if not _documented(node):
                found.append(f"seed {node['name']}: no description")
            found += _column_problems("seed", node["name"], node)
    for source in manifest["sources"].values():
        if not _documented(source):
            found.append(f"source {source['source_name']}.{source['name']}: no description")
    return found


def undocumented_columns(manifest: dict[str, Any], catalog: dict[str, Any]) -> list[str]:
    """Columns the built relations really have (catalog.json) but the YAML does not describe."""
    found: list[str] = []
    for unique_id, built in {**catalog["nodes"], **catalog["sources"]}.items():
        node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id)
        if node is None or node["resource_type"] == "source":
            continue  # Campaign's own tables are documented as tables, not column by column
        documented = {name.lower() for name in node.get("columns", {})}
        found += [
            f"{node['resource_type']} {node['name']}: column {column} is not documented"
            for column in built["columns"]
            if column.lower() not in documented
        ]
    return found


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("target/manifest.json")
    found = problems(json.loads(path.read_text()))
    catalog = path.with_name("catalog.json")
    if catalog.exists():
        found += undocumented_columns(json.loads(path.read_text()), json.loads(catalog.read_text()))
    for problem in found:
        print(problem)
    print(f"hygiene: {len(found)} problems in {path}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
