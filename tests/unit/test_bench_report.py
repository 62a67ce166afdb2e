"""The benchmark's report: its targets, judged offline on figures given by hand."""

from __future__ import annotations

from bench import report
from bench.contenders import Run


def test_targets_cover_every_part_and_report_some_without_judging():
    # Given ratios, probes and costs as a full run would measure them,
    modes = report.Modes("local", "20ms", "20ms-one-group", "200ms-scale-out")
    ratios = {
        "local": {"bookd/baseline": 3.0, "bookd/ceiling": 0.7, "bookd/floor": 0.8},
        "20ms": {"bookd/baseline": 21.0, "bookd/floor": 0.95},
        "20ms-one-group": {"bookd/baseline": 9.0, "bookd by round": [104.0, 98.5, 110.0]},
        "200ms-scale-out": {"two/one instance": 1.9, "four/one instance": 3.6},
    }

    # when the targets are evaluated,
    targets = {
        t["target"]: (t["value"], t["passed"])
        for t in report.evaluate_targets(
            ratios,
            modes,
            {"/health": {"p99": 0.05}},
            {"growth_mb": 1.0},
            3.5,
            {"idle_seconds": 0.8, "loaded": {"seconds": 2.6}, "cold_start": {"seconds": 2.5}},
            {"light": {"bookd/floor p50": 1.2}, "half": {"bookd/floor p99": 2.7}},
            {"/health": {"p99": 0.04}, "/": {"p99": 0.12}, "/metrics": {"p99": 0.09}},
        )
    }

    # then each new part is judged against its bar, or reported only.
    assert targets["20 ms, 50 groups: bookd >= 20x baseline"] == (21.0, True)
    assert targets["20 ms, one group: bookd >= 10x baseline"] == (9.0, False)
    assert targets["200 ms, network-bound: two instances >= 1.8x one"] == (1.9, True)
    assert targets["20 ms bookd >= 90% of call floor"] == (0.95, True)
    assert targets["local bookd / call floor (reported)"] == (0.8, None)
    assert targets["local listener CPU/book < 4.0 ms (the previous figure)"] == (3.5, True)
    assert targets["local listener CPU/book <= 1.5 ms (issue 17)"] == (3.5, False)
    # and the old targets are still there.
    assert targets["local bookd >= 80% of ceiling"] == (0.7, False)
    assert targets["20 ms bookd >= 10x baseline"] == (21.0, True)
    # Stopping: idle, and while saturated.
    assert targets["idle stop (SIGTERM to gone) <= 2 s"] == (0.8, True)
    assert targets["stop while saturated <= 2 s"] == (2.6, False)
    assert targets["stack start to first book announced <= 3 s"] == (2.5, True)
    # The steadier instrument: one group judged on its slowest round; four instances.
    assert targets["20 ms, one group: >= 100 msg/s in every round (the slowest)"] == (98.5, False)
    assert targets["200 ms, network-bound: four instances >= 3.5x one"] == (3.6, True)
    # Latency at steady loads, against the floor's at the same load.
    assert targets["20 ms, light load (10 books/s): bookd p50 <= 1.3x the floor's"] == (1.2, True)
    assert targets["20 ms, half of capacity: bookd p99 <= 2.5x the floor's"] == (2.7, False)
    # The API while the listener is busy: each route against 100 ms.
    assert targets["GET / p99 < 100 ms, 50 clients 50 ms apart, saturated"] == (0.12, False)
    assert targets["GET /metrics p99 < 100 ms, 50 clients 50 ms apart, saturated"] == (0.09, True)
    assert len(targets) == 22


def test_ratios_pair_each_bookd_round_with_its_floor_and_set_two_instances_against_one():
    # Given two rounds of bookd and the floor, one floor run failed, and a scale-out pair,
    runs = [
        Run("baseline", "20ms", 10, 5, rate=10.0),
        Run("bookd", "20ms", 10, 5, round=1, rate=200.0),
        Run("floor", "20ms", 10, 5, round=1, rate=250.0),
        Run("bookd", "20ms", 10, 5, round=2, rate=180.0),
        Run("floor", "20ms", 10, 5, round=2, rate=1.0, problems=["lost a book"]),
        Run("bookd", "200ms-scale-out", 10, 5, rate=40.0),
        Run("bookd x2", "200ms-scale-out", 10, 5, rate=76.0),
    ]

    # when the ratios are taken,
    ratios = report.ratios(runs, ["20ms", "200ms-scale-out"])

    # then only a round whose two runs passed counts against the floor,
    assert ratios["20ms"]["bookd/floor by round"] == [0.8]
    assert ratios["20ms"]["bookd/floor"] == 0.8
    assert ratios["20ms"]["bookd/baseline"] == 19.0  # the median bookd rate, 190
    assert ratios["20ms"]["two/one instance"] is None
    # and two instances are set against one.
    assert ratios["200ms-scale-out"]["two/one instance"] == 1.9
    assert ratios["200ms-scale-out"]["bookd/baseline"] is None
