"""The event report: event-wide totals only (P5), the graph of published
certifications, and what expires soon (D4)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from xml.sax.saxutils import escape

from sqlalchemy import select

from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.publishing import owner_accepted
from keyparty.verification import totals as verification_totals


def totals(event: Event) -> dict:
    certifications = db.session.scalars(
        select(Certification).where(Certification.event_id == event.id)
    ).all()
    states = Counter(
        "refused"
        if c.status == "refused"
        else {"accepted": "published", "declined": "declined"}.get(
            c.owner_decision, "awaiting owner"
        )
        for c in certifications
    )
    found = verification_totals(event)
    return {
        "attendees": len(event.attendees),
        "keys": len(event.keys),
        "verifications": found["verifications"],
        "withdrawn verifications": found["withdrawn"],
        "certifications": dict(sorted(states.items())),
        "refusals by rule": found["refusals"],
    }


def expiring(certifications: list[Certification], days: int, now: datetime | None = None):
    """D4: certifications that expire within `days` (and have not expired yet)."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    until = now + timedelta(days=days)
    return [c for c in certifications if c.expires and now < c.expires <= until]


def given_and_received(attendee: Attendee) -> tuple[list[Certification], list[Certification]]:
    key_ids = [k.id for k in attendee.keys]
    given = db.session.scalars(
        select(Certification).where(
            Certification.signer_id == attendee.id, Certification.status == "accepted"
        )
    ).all()
    received = db.session.scalars(
        select(Certification).where(
            Certification.key_id.in_(key_ids), Certification.status == "accepted"
        )
    ).all()
    return given, received


def graph_svg(event: Event, size: int = 640) -> str:
    """Keys on a circle, labelled by list number; an arrow per published
    certification (signer → key). Drawn here: no external service."""
    keys = sorted(event.keys, key=lambda k: k.list_number or 0)
    centre, radius = size / 2, size / 2 - 40
    where = {}
    for i, key in enumerate(keys):
        angle = 2 * math.pi * i / max(len(keys), 1) - math.pi / 2
        where[key.fingerprint] = (
            centre + radius * math.cos(angle),
            centre + radius * math.sin(angle),
        )
    edges = {
        (c.issuer_fingerprint, c.target_fingerprint)
        for c in owner_accepted(event)
        if c.issuer_fingerprint in where and c.target_fingerprint in where
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="{size}" height="{size}" role="img">',
        f"<title>{escape(event.name)}: published certifications</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="18" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#456"/></marker></defs>',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for source, target in sorted(edges):
        (x1, y1), (x2, y2) = where[source], where[target]
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#456" '
            'stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
    for key in keys:
        x, y = where[key.fingerprint]
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="12" fill="#0b5fff"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="middle" '
            f'fill="white" font-family="sans-serif">{key.list_number or ""}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
