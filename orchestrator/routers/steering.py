"""The cooperating steering rule as nftables sees it (shared by the drivers that use nft).

A function's rule lives in a table of its own, ``ip vnfctl_<function>``, so installing,
reading and removing it never touches anything else on the router.
"""

from __future__ import annotations


def table(function: str) -> str:
    return f"vnfctl_{function}"


def ruleset(function: str, ip: str, port: int, mark: int) -> str:
    """The nft script that (re)creates the function's rule: mark its UDP traffic, counted."""
    t = table(function)
    return (f"table ip {t}\ndelete table ip {t}\n"
            f"table ip {t} {{\n"
            f"  chain steer {{ type filter hook prerouting priority -150; policy accept;\n"
            f"    ip daddr {ip} udp dport {port} counter meta mark set {mark:#x}\n  }}\n}}\n")


def parse(doc: dict) -> dict | None:
    """{"packets", "mark"} from ``nft -j list table ...`` output, None when there is no rule."""
    for item in doc.get("nftables", []):
        rule = item.get("rule")
        if rule:
            packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
            mark = next((e["mangle"]["value"] for e in rule["expr"] if "mangle" in e), None)
            return {"packets": packets, "mark": mark}
    return None
