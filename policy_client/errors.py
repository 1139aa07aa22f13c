"""The errors a low-level policy client raises; each message says what to do about it."""

from __future__ import annotations


class PolicyError(Exception):
    """Base of every failure to get an action chunk from a low-level policy."""


class PolicyUnreachable(PolicyError):
    """No server answers at the address."""


class PolicyTimeout(PolicyError):
    """The server took longer than the request's timeout."""


class PolicyServerError(PolicyError):
    """The server answered with an error (a malformed request, or its policy raised)."""

    def __init__(self, message: str, code: str = "policy_error"):
        super().__init__(message)
        self.code = code


class ProtocolMismatch(PolicyError):
    """Client and server speak different protocol versions or formats."""
