"""The real server over HTTP: health, readiness, schema, docs without a CDN, admin, errors, request ids."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import pytest
import yaml
from openapi_spec_validator import validate

pytestmark = pytest.mark.e2e


class _AssetCollector(HTMLParser):
    """Every URL a browser would fetch to render the page (scripts, styles, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe") and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")


def test_healthz_answers_ok(keel_stack):
    with keel_stack.http() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_every_dependency_ready(keel_stack):
    with keel_stack.http() as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {
        "database": "ok",
        "cache": "ok",
        "channel_layer": "ok",
        "broker": "ok",
    }


def test_schema_is_a_valid_openapi_3_document(keel_stack):
    with keel_stack.http() as client:
        response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.text)
    assert schema["openapi"].startswith("3.")
    validate(schema)
    assert any(path.startswith("/api/v1/") for path in schema["paths"])


def test_api_docs_load_every_asset_from_this_server_without_a_cdn(keel_stack):
    with keel_stack.http() as client:
        page = client.get("/api/docs/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        collector = _AssetCollector()
        collector.feed(page.text)
        scripts = [url for url in collector.urls if url.endswith(".js")]
        styles = [url for url in collector.urls if url.endswith(".css")]
        assert scripts and styles, collector.urls
        for url in collector.urls:
            parsed = urlparse(urljoin(keel_stack.base_url + "/api/docs/", url))
            assert parsed.netloc == f"127.0.0.1:{keel_stack.port}", f"{url} is not served by Keel"
            asset = client.get(parsed.path)
            assert asset.status_code == 200, url
            assert len(asset.content) > 0, url
        assert not re.search(r"https?://(?!127\.0\.0\.1)", page.text), "the page names another host"
        schema_url = re.search(r'url: "([^"]+)"', page.text)
        assert schema_url and client.get(schema_url.group(1)).status_code == 200


def test_admin_login_page_is_served(keel_stack):
    with keel_stack.http() as client:
        response = client.get("/admin/login/")
    assert response.status_code == 200
    assert 'name="password"' in response.text
    assert "Keel" in response.text


def test_unknown_api_path_is_a_problem_document(keel_stack):
    with keel_stack.http() as client:
        response = client.get("/api/v1/no-such-thing", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 404
    assert body["code"] == "not_found"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


def test_unsafe_method_on_unknown_api_path_is_a_problem_404_not_a_csrf_page(keel_stack):
    with keel_stack.http() as client:
        response = client.post("/api/v1/no-such-thing", json={"a": 1})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/no-such-thing"])
def test_sane_client_request_id_is_echoed(keel_stack, path):
    with keel_stack.http() as client:
        response = client.get(path, headers={"X-Request-ID": "mobile-42.retry_1"})
    assert response.headers["x-request-id"] == "mobile-42.retry_1"


@pytest.mark.parametrize("sent", ["has spaces in it", "x" * 129, "semi;colon"])
def test_insane_client_request_id_is_replaced(keel_stack, sent):
    with keel_stack.http() as client:
        response = client.get("/healthz", headers={"X-Request-ID": sent})
    returned = response.headers["x-request-id"]
    assert returned != sent
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", returned)


def test_request_without_id_gets_a_fresh_one_each_time(keel_stack):
    with keel_stack.http() as client:
        first = client.get("/healthz").headers["x-request-id"]
        second = client.get("/healthz").headers["x-request-id"]
    assert first and second and first != second
