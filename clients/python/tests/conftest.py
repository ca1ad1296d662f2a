"""Fixtures for the tests against the real agent-service.

The services are started by the Rust harness (tests/clients.rs, run by `make test`): the real
agent-service with the real Claude Code CLI, the fake model API and a local bare git repository.
It passes them here in the environment, so these tests use what a user would: an address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from autopilot import Client


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(
            f"{name} is not set: these tests run against services that tests/clients.rs starts; "
            "run `cargo test -p autopilot-tests --test clients` (or `make test-clients`)",
            returncode=2,
        )
    return value


@pytest.fixture(scope="session")
def address() -> str:
    """The agent-service, host:port."""
    return _env("AUTOPILOT_ADDRESS")


@pytest.fixture(scope="session")
def repository_url() -> str:
    """A local bare repository with a `main` branch (file:// URL)."""
    return _env("AUTOPILOT_TEST_REPOSITORY")


@pytest.fixture(scope="session")
def main_commit() -> str:
    """The commit `main` points at in that repository."""
    return _env("AUTOPILOT_TEST_MAIN_COMMIT")


@pytest.fixture
def client(address: str) -> Iterator[Client]:
    with Client(address) as client:
        yield client
