"""bench migrate's pure parts: the hop sequence and the summary."""

import pytest

from orchestrator.errors import InputError
from orchestrator.bench.migrate import bench_sequence, render_rows, summarize


def test_bare_hops_come_in_pairs_and_the_kinds_alternate():
    seq = bench_sequence(3, "a", "b")
    assert seq == [("bare", "a", "b"), ("bare", "b", "a"), ("whole", "a", "b"),
                   ("bare", "b", "a"), ("bare", "a", "b"), ("whole", "b", "a"), ("whole", "a", "b")]
    assert [k for k, *_ in seq].count("whole") == 3
    # the guest is back where the function is before every whole hop
    where = "a"
    for kind, src, dst in seq:
        assert src == where or kind == "bare"
        if kind == "whole":
            where = dst
    with pytest.raises(InputError):
        bench_sequence(0, "a", "b")
    both = bench_sequence(1, "a", "b", compare_transport=True)
    assert both == [("bare", "a", "b"), ("bare", "b", "a"), ("other", "a", "b"), ("other", "b", "a"),
                    ("whole", "a", "b")]


def test_summary_medians_ratio_and_goal():
    cpu = {"pct": {"qemu_migration": 80, "dp": 99}}
    hops = [{"kind": "bare", "src": "a", "dst": "b", "transport": "tls", "wall_ms": 2000.0, "libvirt_ms": 900.0,
             "downtime_ms": 40, "cpu": cpu},
            {"kind": "bare", "src": "b", "dst": "a", "transport": "tls", "wall_ms": 3000.0, "libvirt_ms": 1200.0,
             "downtime_ms": 50},
            {"kind": "whole", "src": "a", "dst": "b", "transport": "tls", "wall_ms": 2700.0, "libvirt_ms": 1000.0,
             "downtime_ms": 45}]
    doc = summarize(hops)
    assert (doc["bare_ms"], doc["whole_ms"], doc["ratio"]) == (2500.0, 2700.0, 1.08)
    assert doc["goal_met"] is True and doc["overhead_ms"] == 200.0       # 2700 <= 1.1 * 2500
    assert "transport" not in doc                                        # one transport tried
    hops[2]["wall_ms"] = 2800.0
    assert summarize(hops)["goal_met"] is False
    rows = render_rows(summarize(hops))
    assert rows[0][:6] == ("bare", "a -> b", "tls", "2000", "900", "40") and rows[-1][-1].endswith("NOT met")
    assert "qemu_migration 80%" in rows[0][6]
    assert summarize([])["ratio"] is None


def test_both_transports_give_their_median_downtimes_and_a_ratio_against_the_goal():
    def hop(kind, transport, downtime):
        return {"kind": kind, "src": "a", "dst": "b", "transport": transport, "wall_ms": 2000.0,
                "libvirt_ms": 900.0, "downtime_ms": downtime}

    hops = [hop("bare", "tls", 600), hop("bare", "tls", 700), hop("other", "clear", 500), hop("other", "clear", 540),
            hop("whole", "tls", 650)]
    t = summarize(hops)["transport"]
    assert (t["tls_downtime_ms"], t["clear_downtime_ms"], t["ratio"], t["goal_met"]) == (650.0, 520.0, 1.25, True)
    hops[1]["downtime_ms"] = 900
    t = summarize(hops)["transport"]
    assert t["ratio"] == 1.44 and t["goal_met"] is False
    assert render_rows(summarize(hops))[-1][-1] == "ratio 1.44; goal TLS downtime <= 1.25 x clear: NOT met"
