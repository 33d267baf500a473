"""A DP's own network interface, for a program that cannot pick its frames out of a shared one.

dpdk_stub taps the host's data interface and keeps, with a kernel filter, only the frames for its
function. A stock DPDK application on an af_packet port takes every frame of its interface and
(testpmd 5tswap) sends each one back: on the shared data interface it would answer every other
function's traffic too. So the agent gives such a DP an interface of its own:

- a macvlan on the data interface whose MAC is the DP's: the kernel hands it only the frames
  for that MAC (plus broadcasts), and its frames leave through the data interface;
- the host's kernel stays out of the DP's traffic on it: no IPv6, no IPv4 forwarding (a frame
  for the function's IP is silently dropped by the kernel, not routed or answered with an ICMP
  error), no ARP answers for the host's own addresses (arp_ignore 8);
- a guard on the data interface's ingress (nftables, netdev family) that drops broadcast and
  multicast frames before they reach any such interface: testpmd would send each one back with
  the group address as its source (an invalid frame on any segment). Packet taps (dpdk_stub's
  workers, the agent's ARP claim) see frames before ingress filters, so they still get them.

``DpInterfaces`` is the door; ``LinuxDpInterfaces`` its real implementation (pyroute2 and nft),
``tests/unit`` has a fake.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from orchestrator.agent.protocol import AgentError

PREFIX = "vd"
GUARD_TABLE = "vnfctl_dp_guard"


def interface_name(dp: str) -> str:
    """The DP's interface: 'vd' and 10 hex digits of its name (fits IFNAMSIZ, stable per DP)."""
    return PREFIX + hashlib.sha256(dp.encode()).hexdigest()[:10]


def is_dp_interface(name: str) -> bool:
    return bool(re.fullmatch(PREFIX + r"[0-9a-f]{10}", name))


def guard_table(lower: str) -> str:
    return f"{GUARD_TABLE}_{hashlib.sha256(lower.encode()).hexdigest()[:8]}"


def guard_ruleset(lower: str, present: bool) -> str:
    """Pure: the nft script that puts the ingress guard on ``lower`` (a table of its own), or
    takes it away."""
    table = guard_table(lower)
    if not present:
        return f"delete table netdev {table}\n"
    return (f"table netdev {table}\n"
            f"delete table netdev {table}\n"
            f"table netdev {table} {{\n"
            f" chain ingress {{\n"
            f"  type filter hook ingress device \"{lower}\" priority 0; policy accept;\n"
            # NOTE: the group bit of the destination MAC: broadcast and multicast. Written as a raw
            # link-layer match: nft 1.0.6 compiled 'ether saddr & ...' wrongly here.
            f"  @ll,0,8 & 0x1 == 0x1 drop\n"
            f" }}\n"
            f"}}\n")


class DpInterfaces:
    """The door to a DP's own interface (see the module's docstring)."""

    def create(self, name: str, lower: str, mac: str) -> None:
        raise NotImplementedError

    def remove(self, name: str) -> bool:
        """True when it existed."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """The DP interfaces that exist on this host."""
        raise NotImplementedError

    def guard(self, lower: str, present: bool) -> None:
        raise NotImplementedError


class LinuxDpInterfaces(DpInterfaces):
    def __init__(self, proc_sys: Path = Path("/proc/sys")):
        self.proc_sys = proc_sys

    def _sysctl(self, key: str, value: str, required: bool = True) -> None:
        path = self.proc_sys / key.replace(".", "/")
        try:
            path.write_text(value)
        except FileNotFoundError:
            if required:
                raise AgentError(f"sysctl {key} does not exist on this host") from None
        except OSError as exc:
            raise AgentError(f"sysctl {key} = {value}: {exc.strerror}") from None

    def create(self, name: str, lower: str, mac: str) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=lower)
            if not found:
                raise AgentError(f"data interface {lower} does not exist on this host")
            if ipr.link_lookup(ifname=name):
                ipr.link("del", index=ipr.link_lookup(ifname=name)[0])      # a leftover: start clean
            try:
                ipr.link("add", ifname=name, kind="macvlan", link=found[0], macvlan_mode="private", address=mac)
                idx = ipr.link_lookup(ifname=name)[0]
                # the kernel keeps out of the DP's traffic on it (see the module's docstring)
                self._sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "1", required=False)
                self._sysctl(f"net.ipv4.conf.{name}.forwarding", "0")
                self._sysctl(f"net.ipv4.conf.{name}.arp_ignore", "8")
                ipr.link("set", index=idx, state="up")
            except NetlinkError as exc:
                self.remove(name)
                raise AgentError(f"DP interface {name} on {lower}: {exc.args[-1] if exc.args else exc} "
                                 f"(errno {exc.code})") from None
            except BaseException:
                self.remove(name)
                raise

    def remove(self, name: str) -> bool:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if found:
                ipr.link("del", index=found[0])
            return bool(found)

    def names(self) -> list[str]:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return sorted(n for n in (link.get_attr("IFLA_IFNAME") for link in ipr.get_links()) if is_dp_interface(n))

    def guard(self, lower: str, present: bool) -> None:
        try:
            out = subprocess.run(["nft", "-f", "-"], input=guard_ruleset(lower, present), capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AgentError(f"nft (the DP interfaces' guard on {lower}): {exc}") from None
        if out.returncode != 0 and present:
            raise AgentError(f"nft refused the DP interfaces' guard on {lower}: "
                             f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")
