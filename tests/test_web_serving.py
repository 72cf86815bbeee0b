"""restd serves the web app: its shell under a strict CSP, its assets under a content hash."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from restd.assets import AssetBundle
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.refs: list[str] = []
        self.inline_styles = 0
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
        for name, value in attrs:
            if name in ("src", "href") and value and value.startswith("/assets/"):
                self.refs.append(value)
            if name == "style":
                self.inline_styles += 1
            if name.startswith("on"):
                self.handlers.append(name)


async def test_the_shell_is_served_at_app_paths_with_a_strict_policy(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        http = api.client()
        root = await http.get("/")
        assert root.status_code == 200, root.text
        assert root.headers["content-type"].startswith("text/html")
        assert root.headers["cache-control"] == "no-cache"
        csp = root.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert f"ws://127.0.0.1:{api.settings.chatd_port}" in csp
        assert root.headers["x-frame-options"] == "DENY"

        page = _Refs()
        page.feed(root.text)
        assert page.scripts, "the shell loads the app"
        assert all(s.get("src") for s in page.scripts), "no inline script"
        assert page.inline_styles == 0 and page.handlers == []

        # Every path of the app gets the same shell; the API's unknown paths stay JSON.
        for path in ("/feed", "/chat/0123456789abcdef01234567", "/payments/DC123"):
            again = await http.get(path)
            assert again.status_code == 200 and again.text == root.text, path
        for path in ("/api/no-such-thing", "/metrics", "/wp-login.php", "/feed/a/b"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
            assert missing.headers["content-type"].startswith("application/json"), path

        for ref in page.refs:
            asset = await http.get(ref)
            assert asset.status_code == 200, ref
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"
        build = page.refs[0].split("/")[2]
        stale = await http.get(page.refs[0].replace(build, "0" * len(build)))
        assert stale.status_code == 404


async def test_client_config_names_the_socket_on_the_pages_host(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        http = api.client()
        config = (await http.get("/api/client-config")).json()
        assert config == {
            "chatUrl": f"ws://127.0.0.1:{api.settings.chatd_port}/ws",
            "publicUrl": f"http://127.0.0.1:{api.settings.restd_port}",
        }
        by_name = await http.get("/api/client-config", headers={"Host": "localhost:1"})
        assert by_name.json()["chatUrl"] == f"ws://localhost:{api.settings.chatd_port}/ws"


def test_the_build_hash_follows_every_file_and_the_shell_names_only_app_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "views").mkdir()
    (tmp_path / "index.html").write_text(
        '<link rel="stylesheet" href="app.css"><script type="module" src="main.js"></script>'
        '<a href="/feed">feed</a><a href="https://example.com">x</a>'
    )
    (tmp_path / "app.css").write_text("body{}")
    (tmp_path / "main.js").write_text('import { v } from "./views/feed.js";')
    (tmp_path / "views" / "feed.js").write_text("export const v = 1;")
    first = AssetBundle(tmp_path)
    shell = first.shell.decode()
    assert f'src="/assets/{first.build}/main.js"' in shell
    assert f'href="/assets/{first.build}/app.css"' in shell
    assert 'href="/feed"' in shell and 'href="https://example.com"' in shell
    assert re.fullmatch(r"[0-9a-f]{12}", first.build)
    assert first.get(first.build, "views/feed.js") is not None
    assert first.get(first.build, "index.html") is None

    (tmp_path / "views" / "feed.js").write_text("export const v = 2;")
    second = AssetBundle(tmp_path)
    assert second.build != first.build  # a change deep in the import graph renames all
    assert second.get(first.build, "main.js") is None

    (tmp_path / "index.html").write_text('<script src="missing.js"></script>')
    with pytest.raises(ValueError, match=r"missing\.js"):
        AssetBundle(tmp_path)
