"""What a scheduled job did, as the scheduler, `dawa jobs run` and the tests read it.

Below both the jobs (web.alerts.jobs) and the jobs they run from other features (the DHIS2 push),
so that neither has to import the other to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web.alerts.dispatch import Tally


@dataclass
class JobResult:
    job: str
    started: int = 0
    resolved: int = 0
    in_app: int = 0
    held: int = 0
    sent: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, job: str, tally: Tally, *notes: str) -> "JobResult":
        return cls(job, tally.started, tally.resolved, tally.in_app, tally.held, tally.sent, tally.failed,
                   list(notes), tally.errors)

    def summary(self) -> str:
        text = (f"{self.job}: {self.started} new alert(s), {self.resolved} resolved; {self.in_app} in-app, "
                f"{self.sent} sent, {self.failed} failed, {self.held} held for digest")
        return "; ".join([text, *self.notes])


__all__ = ["JobResult"]
