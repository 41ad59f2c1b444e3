"""certmagic's rules for names (v0.17.2 ``certificates.go``): which subjects can have a
certificate, which only from a private CA, and how a wildcard matches."""

from __future__ import annotations

from txcaddy._go.net import parse_ip

__all__ = [
    "match_wildcard",
    "subject_is_internal",
    "subject_is_ip",
    "subject_qualifies_for_cert",
    "subject_qualifies_for_public_cert",
]

_SPECIAL_CHARS = set("()[]{}<> \t\n\"\\!@#$%^&|;'+=")


def subject_qualifies_for_cert(subject: str) -> bool:
    """certmagic's ``SubjectQualifiesForCert``: a name a certificate can be had for at all."""
    return (
        subject.strip() != ""
        and not subject.startswith(".")
        and not subject.endswith(".")
        and ("*" not in subject or subject.startswith("*.") or subject == "*")
        and not any(ch in _SPECIAL_CHARS for ch in subject)
    )


def subject_is_ip(subject: str) -> bool:
    """Go's ``net.ParseIP(subject) != nil`` (no zones, no leading zeros)."""
    return parse_ip(subject) is not None


def subject_is_internal(subject: str) -> bool:
    """certmagic's ``SubjectIsInternal``: ``localhost`` and ``*.localhost``/``*.local`` (case-sensitive)."""
    return subject == "localhost" or subject.endswith(".localhost") or subject.endswith(".local")


def subject_qualifies_for_public_cert(subject: str) -> bool:
    """certmagic's ``SubjectQualifiesForPublicCert``: a public CA could issue for it."""
    return (
        subject_qualifies_for_cert(subject)
        and not subject_is_internal(subject)
        and not subject_is_ip(subject)
        and (
            "*" not in subject
            or (
                subject.count("*") == 1
                and subject.count(".") > 1
                and len(subject) > 2
                and subject.startswith("*.")
            )
        )
    )


def match_wildcard(subject: str, wildcard: str) -> bool:
    """certmagic's ``MatchWildcard``: equal, or equal once labels are replaced by ``*`` from the left."""
    subject, wildcard = subject.lower(), wildcard.lower()
    if subject == wildcard:
        return True
    if "*" not in wildcard:
        return False
    labels = subject.split(".")
    for i, label in enumerate(labels):
        if not label:
            continue
        labels[i] = "*"
        if ".".join(labels) == wildcard:
            return True
    return False
