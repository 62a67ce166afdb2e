"""End-to-end fixtures: real stacks (supervisord, Gunicorn, listener) on free ports."""

from __future__ import annotations

import pytest

from harness.stack import Stack


@pytest.fixture
def stack_settings(settings):
    return settings.replace(wait_time=2, visibility_timeout=10)


@pytest.fixture
def make_stack(stack_settings, tmp_path):
    """Start stacks; each is killed (whatever of it runs) after the test, pass or fail."""
    stacks: list[Stack] = []

    def make(settings=None, **env: str) -> Stack:
        stack = Stack(settings or stack_settings, tmp_path / f"stack{len(stacks)}", **env)
        stack.tmp.mkdir()
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.cleanup()
