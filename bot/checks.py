"""One finding of ``gitops-bot doctor``: what was checked, how it went, and what to do about it.

Pure data, shared by the parts that probe (settings, :mod:`bot.forges.probes`, Redis,
:mod:`bot.cluster.access`) and :mod:`bot.doctor`, which runs them and prints the table. A check
says *what it found* in ``detail`` and, unless it passed, *what to change* in ``fix``: naming
the setting, permission or command, never a secret's value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Status(enum.Enum):
    """How one check went, from best to worst (the order :func:`worst` uses)."""

    PASS = "pass"
    SKIP = "skip"  # not configured, and not needed
    WARN = "warn"  # doctor cannot tell (a managed Redis refusing CONFIG, a fine-grained token)
    FAIL = "fail"


_RANK = {Status.PASS: 0, Status.SKIP: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    area: str  # "settings", "github", "webhooks", "redis", "cluster default", ...
    name: str  # what was checked, short: "token", "read pull requests on acme/app"
    status: Status
    detail: str = ""  # what was found
    fix: str = ""  # what to do (empty when it passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "check": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix,
        }


def passed(area: str, name: str, detail: str = "") -> Check:
    return Check(area, name, Status.PASS, detail)


def failed(area: str, name: str, detail: str, fix: str) -> Check:
    return Check(area, name, Status.FAIL, detail, fix)


def unsure(area: str, name: str, detail: str, fix: str) -> Check:
    return Check(area, name, Status.WARN, detail, fix)


def skipped(area: str, name: str, detail: str) -> Check:
    return Check(area, name, Status.SKIP, detail)


def worst(checks: list[Check]) -> Status:
    """The worst status among ``checks`` (PASS when there are none)."""
    found = Status.PASS
    for check in checks:
        if _RANK[check.status] > _RANK[found]:
            found = check.status
    return found
