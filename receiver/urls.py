"""URL rules shared by every outbound endpoint the receiver is configured with."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``).

    Plain http is tolerated only there, so the demo and tests can run local stand-ins while a
    production setting can never send keys or credentials in clear text.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
