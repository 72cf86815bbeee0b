from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from tests.harness import Services, make_settings, start_services


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with tempfile.TemporaryDirectory(prefix="devconnect-test-") as tmp:
        running = start_services(Path(tmp))
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def settings(services: Services) -> Settings:
    return make_settings(services)
