"""The docs site and the report as a person sees them: opened in headless Chromium,
with the network cut off (only 127.0.0.1 resolves), screenshotted, and checked for
rendered content: the dbt docs application lists the models, the report's charts load.

Skipped, with the reason printed, where no Chromium is installed (CI installs
Debian's `chromium`). Screenshots go to the test's temporary folder, and also to
$CUBES_SCREENSHOTS when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from campaign_cubes import docs_site
from campaign_cubes.report import build_report
from support import CubesBuild
from test_docs_site import site_for

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 2000)
# What a page may reach: nothing but the loopback server of the docs site.
OFFLINE = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
# Injected into a copy of the report: after loading, the body says how many images decoded.
IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.images = String(images.length);
  document.body.dataset.imagesLoaded = String(images.filter(i => i.complete && i.naturalWidth > 0).length);
});
</script>"""


def find_browser() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


BROWSER = find_browser()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None,
        reason="no Chromium on this machine (apt-get install chromium; "
        "CI installs it): the pages were not checked in a browser",
    ),
]


def chromium(url: str, *action: str) -> str:
    """Run headless Chromium on `url` with one action (--dump-dom or --screenshot=...); its stdout."""
    assert BROWSER is not None
    with tempfile.TemporaryDirectory(prefix="cubes-chromium-") as profile:
        done = subprocess.run(
            [
                BROWSER,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--host-resolver-rules={OFFLINE}",
                "--hide-scrollbars",
                "--virtual-time-budget=10000",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                *action,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def dom(url: str) -> str:
    return chromium(url, "--dump-dom")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def screenshot(url: str, folder: Path, name: str) -> Path:
    """Take a screenshot, check that it shows something, keep a copy in $CUBES_SCREENSHOTS."""
    path = folder / name
    chromium(url, f"--screenshot={path}")
    with Image.open(path) as image:
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50, f"{name} looks blank"
    wanted = os.environ.get("CUBES_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(wanted) / name)
    return path


def text_of(page: str) -> str:
    """The visible text of a dumped DOM, roughly: tags removed, blanks collapsed."""
    without_code = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", without_code).split())


@pytest.fixture(scope="module")
def site(default_build: CubesBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    page, _ = site_for(default_build, tmp_path_factory)
    return page


@pytest.fixture(scope="module")
def served_site(site: Path) -> Iterator[str]:
    """The site over http://127.0.0.1:<port>/, as `orchestrate.py docs --serve` serves it."""
    server = docs_site.docs_server(site.parent, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_docs_model_page_renders_offline_from_disk(site: Path, shots: Path) -> None:
    url = f"{site.as_uri()}#!/model/model.campaign_cubes.agg_messageCenter_full"
    shown = text_of(dom(url))
    # the application rendered: the project tree lists both aggregates, the page the model's docs
    assert "agg_nmspropositionrcp_full" in shown and "agg_messageCenter_full" in shown
    assert "one row per event date × channel × status × event type" in shown
    assert "cron 0 3 * * *" in shown and "Zone:" in shown
    for column in ("event_date", "status_name", "avg_processing_seconds", "max_processing_seconds"):
        assert column in shown
    screenshot(url, shots, "docs-model-agg_messageCenter_full.png")


def test_docs_overview_served_on_loopback(served_site: str, shots: Path) -> None:
    url = f"{served_site}#!/overview"
    shown = text_of(dom(url))
    assert "The published aggregates" in shown
    for name in (
        "agg_nmspropositionrcp_full",
        "agg_messagecenter_full",
        "Offer analysis",
        "Message Center — service level",
        "campaign_event_statuses",
    ):
        assert name in shown
    screenshot(url, shots, "docs-overview.png")


def test_docs_lineage_graph_opens(served_site: str, shots: Path) -> None:
    url = f"{served_site}#!/overview?g_v=1&g_i=%2Bexposure:*"  # the overview's link: tables to reports
    page = dom(url)
    assert "Lineage Graph" in text_of(page) and "<canvas" in page  # the graph is drawn on canvases
    screenshot(url, shots, "docs-lineage.png")


def test_docs_exposure_and_seed_pages(site: Path) -> None:
    exposure = text_of(dom(f"{site.as_uri()}#!/exposure/exposure.campaign_cubes.offer_analysis"))
    assert "CRM analytics" in exposure and "crm-analytics@example.com" in exposure
    assert "agg_nmspropositionrcp_full" in exposure
    seed = text_of(dom(f"{site.as_uri()}#!/seed/seed.campaign_cubes.campaign_event_statuses"))
    assert "Unconfirmed codes: all of them" in seed and "⚠ unconfirmed" in seed


@pytest.fixture(scope="module")
def report(default_build: CubesBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(default_build.schema, tmp_path_factory.mktemp("report"), None, None)


def probed(page: Path) -> Path:
    """A copy of the page, beside it (same relative links), with the image probe injected."""
    probe = page.with_name("browser-probe.html")
    probe.write_text(page.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    return probe


def test_report_renders_with_its_charts(report: Path, shots: Path) -> None:
    probe = probed(report)
    try:
        page = dom(probe.as_uri())
    finally:
        probe.unlink()
    images = re.search(r'data-images="(\d+)"', page)
    loaded = re.search(r'data-images-loaded="(\d+)"', page)
    assert images and loaded, "the page's load event did not fire"
    assert int(images.group(1)) == 6 and loaded.group(1) == images.group(1), "a chart did not load"
    shown = text_of(page)
    for title in ("Offer analysis", "Message Center history", "Service level", "Processing time", "All channels"):
        assert title in shown
    assert "No data for this period" not in shown
    screenshot(report.as_uri(), shots, "report.png")


def test_empty_report_says_so(default_build: CubesBuild, tmp_path: Path, shots: Path) -> None:
    from datetime import date

    page = build_report(default_build.schema, tmp_path, date(1990, 1, 1), date(1990, 1, 2))
    shown = text_of(dom(page.as_uri()))
    assert shown.count("No data for this period") == 4
    screenshot(page.as_uri(), shots, "report-empty-period.png")
