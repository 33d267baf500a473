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
    """{"packets", "mark", "ip", "port"} from ``nft -j list table ...`` output (what it matches,
    None where the rule does not say), None when there is no rule."""
    for item in doc.get("nftables", []):
        rule = item.get("rule")
        if rule:
            packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
            mark = next((e["mangle"]["value"] for e in rule["expr"] if "mangle" in e), None)
            matched = {(m["left"].get("payload") or {}).get("field"): m.get("right")
                       for e in rule["expr"] if isinstance(m := e.get("match"), dict) and isinstance(m.get("left"), dict)}
            return {"packets": packets, "mark": mark, "ip": matched.get("daddr"), "port": matched.get("dport")}
    return None


def same(rule: dict | None, ip: str, port: int, mark: int) -> bool:
    """Whether a rule read back (``parse``) is the one ``ruleset`` makes for these."""
    return rule is not None and (rule.get("ip"), rule.get("port"), rule.get("mark")) == (ip, port, mark)
