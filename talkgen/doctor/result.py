"""One doctor finding (`Check`), the guard that turns a crashing check into one, and the report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warning", "error"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "error")


@dataclass(frozen=True)
class Check:
    """``name``: what was checked; ``detail``: what was found; ``fix``: what to do (warnings and errors)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warning(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warning", detail, fix)


def error(name: str, detail: str, fix: str) -> Check:
    return Check(name, "error", detail, fix)


def guarded(name: str, check: Callable[[], Iterable[Check]]) -> list[Check]:
    """Run ``check``; any exception becomes one error line naming it (never a traceback)."""
    from talkgen.errors import TalkgenError

    try:
        return list(check())
    except TalkgenError as exc:
        return [error(name, exc.message, "as the detail says")]
    except Exception as exc:  # a bug or an odd machine: the report still completes
        return [error(name, f"the check itself failed: {type(exc).__name__}: {str(exc)[:300]}",
                      "report this as a talkgen bug (with `talkgen doctor --json`)")]


@dataclass(frozen=True)
class Report:
    """Every check of one run; ``ok`` is False when any is an error."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not any(c.status == "error" for c in self.checks)

    def count(self, status: Status) -> int:
        return sum(c.status == status for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "errors": self.count("error"), "warnings": self.count("warning"),
                "checks": [c.to_dict() for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_text(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = []
        for c in self.checks:
            lines.append(f"{c.status:<8}{c.name:<{width + 2}}{c.detail}")
            if c.fix:
                lines.append(f"{'':<8}{'':<{width + 2}}fix: {c.fix}")
        errors, warnings = self.count("error"), self.count("warning")
        verdict = "this machine can serve" if self.ok else "this machine cannot serve until the errors are fixed"
        lines.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}: {verdict}")
        return "\n".join(lines)
