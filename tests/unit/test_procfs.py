"""What /proc tells the bench about a process's threads (harness.procfs)."""

from __future__ import annotations

import os
import threading
import time

from harness.procfs import cpu_by_thread_name, cpu_seconds


def test_cpu_by_thread_name_counts_a_busy_thread_and_no_more_than_the_process():
    me = os.getpid()
    before = sum(cpu_by_thread_name(me).values())
    spun, may_end = threading.Event(), threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.3  # the thread's own CPU, however loaded the machine
        while time.thread_time() < end:
            pass
        spun.set()
        may_end.wait(10)  # alive while it is read: only live threads are counted

    busy = threading.Thread(target=spin)
    busy.start()
    try:
        assert spun.wait(30)
        during = sum(cpu_by_thread_name(me).values())
    finally:
        may_end.set()
        busy.join()
    assert during - before >= 0.25
    assert during <= cpu_seconds(me) + 0.02
