"""Which addresses only this machine can reach: what the server and the cluster client may use without a token
or TLS (anything else gets a refusal or a warning)."""
import ipaddress


def is_loopback(host):
    """Whether ``host`` (a name or an IP, IPv6 with or without brackets) is this machine only: localhost,
    127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
