"""The errors of the ACME issuers (``txcaddy.tls.acme``): each names the names, the CA and the cause."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acme import messages

__all__ = [
    "ACMEDirectoryError",
    "ACMEError",
    "ACMEProblemError",
    "ACMETimeoutError",
    "ChallengeFailedError",
    "RateLimitedError",
]


class ACMEError(Exception):
    """Getting or revoking a certificate from an ACME CA failed; the message names the
    names, the CA and the cause.

    @ivar names: the names of the certificate (empty for account or revocation errors).
    @ivar ca: the directory URL the issuer was talking to.
    """

    def __init__(self, message: str, *, names: Sequence[str] = (), ca: str = "") -> None:
        super().__init__(message)
        self.names = tuple(names)
        self.ca = ca


class ACMEDirectoryError(ACMEError):
    """The CA's directory could not be fetched (unreachable, not TLS-trusted, not ACME)."""


class ACMEProblemError(ACMEError):
    """The CA refused a request with a problem document (RFC 7807).

    @ivar problem: certbot's ``acme.messages.Error``: ``typ``, ``detail``, ``code``.
    """

    def __init__(self, message: str, problem: messages.Error, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.problem = problem


class RateLimitedError(ACMEProblemError):
    """The CA answered ``urn:ietf:params:acme:error:rateLimited``."""


class ChallengeFailedError(ACMEError):
    """The CA could not validate a name.

    @ivar identifier: the name being validated.
    @ivar challenge_type: ``http-01`` or ``tls-alpn-01``.
    @ivar problem: the challenge's error as the CA reported it (or None).
    """

    def __init__(self, message: str, identifier: str, challenge_type: str, problem: messages.Error | None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.identifier = identifier
        self.challenge_type = challenge_type
        self.problem = problem


class ACMETimeoutError(ACMEError):
    """The CA took longer than ``acme_timeout`` to validate or to issue."""


class _ChallengeFailure(Exception):
    """One validation failed; the order may be retried with another challenge type."""

    def __init__(self, identifier: str, challenge_type: str, problem: messages.Error | None, retryable: bool) -> None:
        super().__init__(identifier, challenge_type)
        self.identifier = identifier
        self.challenge_type = challenge_type
        self.problem = problem
        self.retryable = retryable

    def describe(self) -> str:
        cause = str(self.problem) if self.problem is not None else "no error detail from the CA"
        return f"{self.identifier}: {self.challenge_type} challenge failed: {cause}"
