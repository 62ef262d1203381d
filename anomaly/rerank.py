"""Learning from verdicts: auditors' confirmed and dismissed cases train a re-ranker of the open ones.

The unsupervised ranking (anomaly.cases) knows how rare a finding is, not whether this ministry's
auditors find that kind of finding worth their day. Once both kinds of verdict exist, a logistic
regression (scikit-learn) learns from the decided cases which kinds of evidence lead to confirmed
cases; its features describe a case, never its id: each detector's surprise on it, the combined
surprise, the subject it is about, how many detectors and entries it rests on. Every flag's rank
is then the mean of its unsupervised score and the model's probability, so a confirmed kind of
case moves up and a dismissed kind down, while the rarity of the evidence still counts. With no
verdicts, or verdicts of one kind only, the rank is the score weighted by each detector's measured
precision (anomaly.flags).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anomaly import detectors
from anomaly.models import SUBJECTS, Flag, FlagEvidence, FlagHit, Verdict

MIN_EACH = 2
"""Verdicts of each kind (confirmed or escalated / dismissed) needed before a model is trained."""
BLEND = 0.5
"""Weight of the model's probability in the rank; the rest is the unsupervised score."""


def case_features(session: Session, flags: list[Flag]) -> np.ndarray:
    """One row per flag: per-detector surprise, combined surprise, subject, detectors, entries."""
    names = list(detectors.ALL)
    col = {n: i for i, n in enumerate(names)}
    surprise: dict[str, dict[str, float]] = defaultdict(dict)
    for fid, det, score, details in session.execute(select(FlagHit.flag_id, FlagHit.detector, FlagHit.score,
                                                           FlagHit.details)):
        value = details.get("surprise") if isinstance(details, dict) else None
        surprise[fid][det] = float(value) if value is not None else float(score)
    entries = dict(session.execute(select(FlagEvidence.flag_id, func.count()).group_by(FlagEvidence.flag_id)).all())
    width = len(names) + 1 + 3 + len(SUBJECTS)
    x = np.zeros((len(flags), width))
    for r, f in enumerate(flags):
        mine = surprise.get(f.flag_id, {})
        for det, value in mine.items():
            if det in col:
                x[r, col[det]] = value
        x[r, len(names)] = -np.log(max(1e-9, 1.0 - f.score))
        x[r, len(names) + 1] = len(mine)
        x[r, len(names) + 2] = np.log1p(entries.get(f.flag_id, 0))
        x[r, len(names) + 3] = f.score
        if f.subject in SUBJECTS:
            x[r, len(names) + 4 + SUBJECTS.index(f.subject)] = 1.0
    return x


def labels(session: Session) -> dict[str, int]:
    """Latest verdict per flag: 1 confirmed or escalated, 0 dismissed."""
    latest = select(Verdict.flag_id, func.max(Verdict.id).label("vid")).group_by(Verdict.flag_id).subquery()
    rows = session.execute(select(Verdict.flag_id, Verdict.verdict).join(latest, latest.c.vid == Verdict.id)).all()
    return {fid: int(v in ("confirmed", "escalated")) for fid, v in rows}


def learned_ranks(session: Session, random_state: int = 0) -> dict[str, float] | None:
    """Rank score per flag from a model trained on the verdicts, or None when there are too few."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_of = labels(session)
    if sum(y_of.values()) < MIN_EACH or len(y_of) - sum(y_of.values()) < MIN_EACH:
        return None
    flags = list(session.scalars(select(Flag).order_by(Flag.flag_id)))
    if not flags:
        return {}
    x = case_features(session, flags)
    train = [i for i, f in enumerate(flags) if f.flag_id in y_of]
    y = np.array([y_of[flags[i].flag_id] for i in train])
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000,
                                                               random_state=random_state))
    model.fit(x[train], y)
    proba = model.predict_proba(x)[:, 1]
    return {f.flag_id: round((1 - BLEND) * f.score + BLEND * float(p), 6) for f, p in zip(flags, proba)}
