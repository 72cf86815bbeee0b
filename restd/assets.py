"""The web app's files (``restd/web/``), served from memory under a content hash.

Every file is read once at start-up. Their combined SHA-256 names the build:
assets are served at ``/assets/<build>/<path>`` with a year-long immutable
cache, so a deploy that changes any file changes every asset URL, and a
browser never mixes modules of two builds (their relative imports resolve
inside one build's directory). The app shell (``index.html``) is the one
file served without a hash and revalidated on every load: its ``src`` and
``href`` attributes naming a file of the app are rewritten to the build's URL.
There is no build step and no Node toolchain: the modules are the source.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

WEB_DIR = Path(__file__).parent / "web"
SHELL = "index.html"
ASSET_PREFIX = "/assets/"
BUILD_HASH_CHARS = 12
# src="main.js", href="app.css", href="icons/logo.svg": relative names of app files.
_REF = re.compile(r'\b(src|href)="(?!/|[a-z]+:|#)([A-Za-z0-9_./-]+)"')
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


class AssetBundle:
    """The app's files by path, the build hash, and the rewritten shell."""

    def __init__(self, root: Path = WEB_DIR) -> None:
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        digest = hashlib.sha256()
        self.assets: dict[str, Asset] = {}
        shell = b""
        for path in files:
            name = path.relative_to(root).as_posix()
            body = path.read_bytes()
            digest.update(name.encode() + b"\0" + body + b"\0")
            if name == SHELL:
                shell = body
            else:
                self.assets[name] = Asset(body, content_type(name))
        self.build = digest.hexdigest()[:BUILD_HASH_CHARS]
        self.base = f"{ASSET_PREFIX}{self.build}/"
        self.shell = self._rewrite(shell.decode()).encode() if shell else b""

    def url(self, name: str) -> str:
        return self.base + name

    def get(self, build: str, name: str) -> Asset | None:
        """The asset, only under this build's hash (an older build's URL is a 404)."""
        return self.assets.get(name) if build == self.build else None

    def _rewrite(self, html: str) -> str:
        def ref(match: re.Match[str]) -> str:
            attr, name = match.group(1), match.group(2)
            if name not in self.assets:
                raise ValueError(f"{SHELL} names {name!r}, which is not a file of the app")
            return f'{attr}="{self.url(name)}"'

        return _REF.sub(ref, html)


def content_type(name: str) -> str:
    suffix = Path(name).suffix
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
