import socket
from pathlib import Path

from tritonfleet.net import free_port


def test_a_free_port_is_bindable_and_outside_the_ephemeral_range() -> None:
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(port < ephemeral_start for port in ports), "no outgoing connection can take one"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_is_not_handed_out_twice_though_nothing_bound_it_yet() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
