"""The API docs pages load no third-party script, through nginx: Swagger UI is
vendored from npm (web/build.sh) and served from our origin, which also holds
the tokens in localStorage; a script from a CDN without ``integrity`` could read them.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from services.common.web import SWAGGER_UI_ASSETS, SWAGGER_UI_VERSION
from tests.conftest import ROOT


def test_the_vendored_version_is_the_one_web_package_json_pins() -> None:
    package = json.loads((ROOT / "web" / "package.json").read_text())
    assert package["dependencies"]["swagger-ui-dist"] == SWAGGER_UI_VERSION


@pytest.mark.stack
@pytest.mark.parametrize("service", ["iam", "quiz", "leaderboard"])
def test_swagger_pages_load_only_same_origin_files(http: httpx.Client, service: str) -> None:
    r = http.get(f"/api/{service}/schema/swagger")
    assert r.status_code == 200, r.text[:300]
    page = r.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert urls, page[:500]
    assert not [u for u in urls if "//" in u], urls  # no absolute (third-party) URL
    assets = [u for u in urls if u.startswith(SWAGGER_UI_ASSETS + "/")]
    assert len(assets) == 4, urls
    for url in assets:
        got = http.get(url)
        assert got.status_code == 200, (url, got.status_code)
        assert len(got.content) > 200, url
    # The page fetches its schema from the service itself (relative to the page).
    assert http.get(f"/api/{service}/schema/openapi.json").status_code == 200
