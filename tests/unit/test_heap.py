"""A long-lived process's start-up heap is frozen once it is ready (bookd.supervision.heap)."""

from __future__ import annotations

import gc

import pytest

from bookd.cli import service
from bookd.core.config import Settings


@pytest.fixture
def unfrozen():
    """Start with nothing frozen, and leave nothing frozen for the tests after."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_connected_listener_freezes_what_its_start_left_on_the_heap(unfrozen):
    # Given what a start leaves alive (modules, clients: here, a thousand lists),
    started = [[n] for n in range(1000)]
    assert gc.get_freeze_count() == 0
    # when the listener reports itself connected (at the niceness it has already),
    service._connected(Settings.from_env().replace(listener_nice=0))
    # then all of it sits where the collector's full collections no longer walk.
    assert gc.get_freeze_count() >= len(started)
