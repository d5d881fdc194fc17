"""valence.network: the addresses the server and the cluster client treat as this machine only."""
import pytest

from valence.network import is_loopback


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.5.6.7", "::1", "[::1]"])
def test_this_machine_only(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.0.2.1", "example.com", "localhost.example.com",
                                  "", "[::ffff:10.0.0.5]"])
def test_reachable_from_elsewhere_or_unknown(host):
    assert not is_loopback(host)
