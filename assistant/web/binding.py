"""Binding safety: which hosts are loopback, and the password a non-loopback host needs."""

from __future__ import annotations

import ipaddress

from assistant.settings import AssistantError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """``"user:password"`` → ``("user", "password")``; raises AssistantError when malformed."""
    if auth is None or auth == "":
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user.strip() or not password:
        raise AssistantError("--auth (ASSISTANT_AUTH) must look like user:password")
    return user.strip(), password


def check_bind(host: str, auth: str | None) -> tuple[str, str] | None:
    """The credentials to require; refuses a non-loopback ``host`` without ``auth``."""
    credentials = parse_auth(auth)
    if credentials is None and not is_loopback(host):
        raise AssistantError(
            f"refusing to serve on {host} without a password: anyone on the network could use "
            "the page. Pass --auth user:password (or set ASSISTANT_AUTH), or bind to 127.0.0.1"
        )
    return credentials
