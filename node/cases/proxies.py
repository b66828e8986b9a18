"""The client address that the failed-PIN limiter counts, behind trusted reverse proxies.

A request's direct peer is the client, unless the peer is one of `[http]
trusted_proxies` (addresses or CIDR networks). Then the client is read from
`X-Forwarded-For`: its addresses (several such headers form one list, in order) are
walked from the right -- each was appended by the proxy in front of the one that
appended the next -- and the first address that is not itself a trusted proxy is the
client. What lies to its left was written by the client or by hops nobody vouches
for, and is never believed. The header is never read when the peer is not trusted
(anyone can send it).

Behind a proxy that is not listed, every person shares the proxy's address, so one
person's wrong PINs slow down and lock out everyone. The first time a loopback or
private peer sends X-Forwarded-For while no proxy is trusted, one warning says so
(without any address).

Addresses pass from here only to AddressLimiter.slot, which keeps a keyed hash of
them; they are never stored or logged.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Iterable

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str | None) -> IPAddress | None:
    """An address as peers and proxies write it ("192.0.2.1", "192.0.2.1:4711",
    "2001:db8::1", "[2001:db8::1]:4711"), IPv4-mapped IPv6 read as IPv4; None if it is
    none of these (e.g. "unknown")."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_networks(address: str | None) -> tuple[str, str]:
    """The two keys a client is counted under by the limits that work per client
    (node/web/body.py, node/cases/creation.py): its address -- for IPv6 its /64, since
    one machine commonly holds a whole /64 -- and its network, IPv4 /24 or IPv6 /56
    (what one customer of a provider usually gets). Kept in memory only."""
    ip = parse_address(address)
    if ip is None:
        return ("?", "?")  # not an address (a test client, "unknown" from a proxy): one client
    if ip.version == 4:
        return (str(ip), str(ipaddress.ip_network(f"{ip}/24", strict=False)))
    return (str(ipaddress.ip_network(f"{ip}/64", strict=False)), str(ipaddress.ip_network(f"{ip}/56", strict=False)))


class ClientAddresses:
    def __init__(self, trusted_proxies: Iterable[str] = ()):
        self.networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self._warned = False

    def _trusted(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: list[str]) -> str | None:
        """The address to count a request under: `peer` is the direct peer
        (request.remote), `forwarded_for` every X-Forwarded-For header, in order."""
        peer_ip = parse_address(peer)
        if peer_ip is None or not self._trusted(peer_ip):
            if forwarded_for and peer_ip is not None and not self.networks and not self._warned \
                    and (peer_ip.is_loopback or peer_ip.is_private):
                self._warned = True
                log.warning("cases: requests reach the case API through a reverse proxy (X-Forwarded-For "
                            "from a local or private address) but [http] trusted_proxies is empty: the "
                            "failed-PIN limiter sees everyone behind the proxy as one client and cannot "
                            "tell people apart (one person's wrong PINs delay and lock out all). List the "
                            "proxy's address in [http] trusted_proxies.")
            return peer
        client = peer_ip
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            ip = parse_address(hop)
            if ip is None:
                break  # a trusted proxy wrote something else ("unknown"): count under that proxy
            client = ip
            if not self._trusted(ip):
                break
        return str(client)
