"""Personal data in training rows: emails, phone numbers, payment cards (Luhn) and IBANs.

Detection is deliberately conservative: a card number must pass the Luhn check and an
IBAN its mod-97 check, so order numbers and dates are not flagged. `data.pii` decides
what happens: redact (replace with a placeholder), drop the row, fail the check, or allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from training_scripts.rows import DataError, RowProblem

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# Runs of 13-19 digits, optionally grouped by spaces or dashes.
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
# International or North-American style numbers with at least 9 digits in total.
PHONE = re.compile(
    r"(?<![\w/])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?![\w/])"
)

PLACEHOLDERS = {"email": "[EMAIL]", "card": "[CARD]", "iban": "[IBAN]", "phone": "[PHONE]"}


@dataclass(frozen=True)
class Finding:
    kind: str  # email | card | iban | phone
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def find(text: str) -> list[Finding]:
    """Non-overlapping findings, most specific kinds first."""
    findings: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, match: re.Match[str]) -> None:
        span = match.span()
        if any(span[0] < end and start < span[1] for start, end in taken):
            return
        taken.append(span)
        findings.append(Finding(kind, *span))

    for match in EMAIL.finditer(text):
        add("email", match)
    for match in IBAN.finditer(text):
        if iban_ok(match.group()):
            add("iban", match)
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            add("card", match)
    for match in PHONE.finditer(text):
        if len(re.sub(r"\D", "", match.group())) >= 9:
            add("phone", match)
    return sorted(findings, key=lambda f: f.start)


def redact(text: str) -> str:
    for finding in reversed(find(text)):
        text = text[: finding.start] + PLACEHOLDERS[finding.kind] + text[finding.end :]
    return text


def apply_policy(examples: list[Any], policy: str, source: str) -> tuple[list[Any], int]:
    """Apply `data.pii` to examples: (what to train on, how many rows had personal data)."""
    if policy == "allow":
        return examples, 0
    kept, flagged, problems = [], 0, []
    for example in examples:
        kinds = sorted({f.kind for m in example.messages for f in find(m.get("content") or "")})
        if not kinds:
            kept.append(example)
            continue
        flagged += 1
        if policy == "fail":
            problems.append(
                RowProblem(
                    source,
                    example.line,
                    f"personal data ({', '.join(kinds)}); set data.pii to redact, drop or allow",
                )
            )
        elif policy == "redact":
            messages = [
                {**m, "content": redact(m["content"])} if m.get("content") else m
                for m in example.messages
            ]
            kept.append(replace(example, messages=messages))
    if problems:
        raise DataError(problems)
    return kept, flagged
