"""/docs and /redoc from the service's own files: the pages name no outside host, their assets
answer, and a headless Chromium that can reach only loopback renders every operation."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.project import copy_project, live_service

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Reaches only loopback: no other host resolves, and no background fetches of Chromium's own.
OFFLINE_CHROMIUM = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--virtual-time-budget=10000",
]
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_the_services_own_assets(client, page):
    html = client.get(page).text
    assert "http://" not in html and "https://" not in html  # no CDN, no web fonts
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets), html
    for asset in assets:
        assert asset.startswith("/docs/static/"), asset
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["content-type"].startswith(CONTENT_TYPES[Path(asset).suffix])
    assert "/openapi.json" in html


def test_docs_pages_stay_out_of_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/docs", "/redoc")) for path in paths)
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/docs/static/nothing.js").status_code == 404


def rendered(url: str, profile: Path) -> str:
    """The DOM headless Chromium has built from ``url`` after its scripts ran."""
    command = [str(CHROMIUM), *OFFLINE_CHROMIUM, f"--user-data-dir={profile}", "--dump-dom", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium (bash scripts/install_browser.sh installs it)",
)
def test_docs_render_in_a_browser_without_network(trained_project, tmp_path):
    with live_service(copy_project(trained_project, tmp_path / "project")) as service:
        swagger = rendered(f"{service.url}/docs", tmp_path / "chromium")
        redoc = rendered(f"{service.url}/redoc", tmp_path / "chromium")
    # Swagger UI built an operation block per route from the OpenAPI document.
    assert 'id="swagger-ui"' in swagger and "Failed to load API definition" not in swagger
    assert swagger.count('class="opblock ') >= 10, swagger[-2000:]
    assert 'data-path="/playlists/advanced"' in swagger
    # ReDoc built its menu and an anchored section per operation.
    assert "redoc-wrap" in redoc
    assert redoc.count("/operation/") >= 10 and "/playlists/advanced" in redoc, redoc[-2000:]
