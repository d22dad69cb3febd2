"""The built documentation site, as a reader gets it (`nox -s docs` builds it and runs these with ``--site``):
internal links and anchors resolve with no network, the API reference has every public name, and headless
Chromium renders the home page and the API page of ``InferenceEngine`` (scripts run) and finds ``load_model``
with the site's search. Screenshots go to ``<site>/../screenshots/``."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import llcuda
from llcuda_testkit import apidocs


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.getoption("--site")).resolve()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("no chromium: `nox -s docs` needs Debian's chromium (ci/install-docs-deps.sh installs it)")
    return exe


def _browse(url: str, *, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` after its scripts ran (headless Chromium, with a virtual time budget for them)."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    cmd += ["--window-size=1280,1600"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        shot = subprocess.run([*cmd, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=120)
        assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    out = subprocess.run([*cmd, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _text(dom: str) -> str:
    """The rendered text, tags dropped (a signature's parts are separate elements: ``load_model(model, ...``)."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", dom)))


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    ids = {p: set(re.findall(r'\sid="([^"]+)"', p.read_text())) for p in pages}
    broken = []
    for page in pages:
        for href in re.findall(r'href="([^"]+)"', page.read_text()):
            parts = urlsplit(html.unescape(href))
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "#search")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no such file)")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in ids.get(target, set()):
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert broken == []
    assert len(pages) >= 10


def test_the_api_reference_has_every_public_name(site: Path) -> None:
    page = (site / "api.html").read_text()
    assert apidocs.missing_from_reference(llcuda, page) == []


def test_chromium_renders_the_home_page(site: Path) -> None:
    dom = _browse((site / "index.html").as_uri(), screenshot=site.parent / "screenshots" / "home.png")
    assert re.search(r"<h1[^>]*>\s*llcuda", dom)
    assert "<pre" in dom and "InferenceEngine()" in _text(dom)


def test_chromium_renders_the_engine_in_the_api_page(site: Path) -> None:
    dom = _browse(
        (site / "api.html").as_uri() + "#llcuda.InferenceEngine", screenshot=site.parent / "screenshots" / "api.png"
    )
    text = _text(dom)
    assert "class llcuda.InferenceEngine" in text
    assert "load_model(model: str | PathLike[str]" in text, "the signature of load_model is not on the page"


def test_the_sites_search_finds_load_model(site: Path) -> None:
    dom = _browse(
        (site / "search.html").as_uri() + "?q=load_model", screenshot=site.parent / "screenshots" / "search.png"
    )
    hits = re.findall(r'href="([^"]*#llcuda\.InferenceEngine\.load_model)"', dom)
    assert hits, _text(dom)[:2000]


def test_the_readmes_links_into_the_site_resolve(site: Path) -> None:
    """The README (the PyPI page) links into the published site; each page and anchor it names is built."""
    from llcuda_factory import REPO_ROOT
    from llcuda_factory.targets import pages_url

    base = pages_url()
    links = re.findall(rf"{re.escape(base)}([^)\s>]*)", (REPO_ROOT / "README.md").read_text())
    assert links, f"the README has no link into {base}"
    for link in links:
        if link.startswith("simple/"):  # the variants' index: release assets, not the docs (ci/pages-site.sh)
            continue
        path, _, anchor = link.partition("#")
        page = site / (path or "index.html")
        assert page.is_file(), f"README links to {base}{link}: no {page.name} in the site"
        if anchor:
            assert f'id="{anchor}"' in page.read_text(), f"README links to {base}{link}: no such anchor"
