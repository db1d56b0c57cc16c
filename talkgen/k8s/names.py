"""Kubernetes name and quantity rules, shared by the render options and the manifest checks.

Kept free of the ``kubernetes`` package so that checking a flag costs nothing to import.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_QUANTITY = re.compile(r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_LABEL_KEY_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}
LABEL_RULE = ("lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 "
              "characters")
SUBDOMAIN_RULE = "one or more DNS-1123 labels joined by '.', at most 253 characters"


def dns_label_problem(value: object, limit: int = 63) -> str | None:
    """Why ``value`` is not a DNS-1123 label (namespaces, Job and container names), or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > limit:
        return f"{value[:80]!r} is {len(value)} characters long: at most {limit} (DNS-1123 label)"
    if not _LABEL.fullmatch(value):
        return f"{value[:80]!r} is not a DNS-1123 label: use {LABEL_RULE}"
    return None


def dns_subdomain_problem(value: object) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (PVC, Secret, service account names), or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > 253 or not all(_LABEL.fullmatch(part) for part in value.split(".")):
        return f"{value[:80]!r} is not a DNS-1123 subdomain: use {SUBDOMAIN_RULE}"
    return None


def env_name_problem(value: object) -> str | None:
    """Why ``value`` cannot name an environment variable in a container, or None."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        return (f"{str(value)[:80]!r} is not a valid environment variable name: use letters, digits, '_', '-' "
                "and '.', not starting with a digit")
    return None


def label_key_problem(value: object) -> str | None:
    """Why ``value`` is not a label/annotation key (``[prefix/]name``), or None."""
    if not isinstance(value, str) or not value:
        return "a key must be a non-empty string"
    prefix, _, name = value.rpartition("/")
    if prefix and dns_subdomain_problem(prefix):
        return f"the prefix of {value[:80]!r} is not a DNS-1123 subdomain"
    if len(name) > 63 or not _LABEL_KEY_NAME.fullmatch(name):
        return (f"{value[:80]!r} is not a valid key: the name part is at most 63 letters, digits, '-', '_' or "
                "'.', starting and ending with a letter or digit")
    return None


def label_value_problem(value: object) -> str | None:
    """Why ``value`` is not a label value (empty, or like a key's name part), or None."""
    if not isinstance(value, str):
        return "a label value must be a string"
    if value and (len(value) > 63 or not _LABEL_KEY_NAME.fullmatch(value)):
        return (f"{value[:80]!r} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity ("50Gi", "500m", "2", 4) as a Decimal; ValueError saying the accepted form."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{str(value)[:80]!r} is not a quantity: use a number with an optional suffix such as "
                         "Ki, Mi, Gi, m, k, M, G")
    text = str(value)
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{text[:80]!r} is not a quantity: use a number with an optional suffix such as Ki, Mi, "
                         "Gi, m, k, M, G (e.g. 50Gi, 500m, 16Gi)")
    try:
        number = Decimal(match["num"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise ValueError(f"{text[:80]!r} is not a quantity") from None
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        return number * Decimal(10) ** int(suffix[1:])
    return number
