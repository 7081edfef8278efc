"""Badges: what is printed for each key on the frozen list."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from keyparty.extensions import db
from keyparty.models import Event
from keyparty.models import Key
from keyparty.partylist import group_fingerprint
from keyparty.qr import fingerprint_payload
from keyparty.qr import qr_svg


@dataclass(frozen=True)
class Badge:
    number: int | None
    name: str
    fingerprint: str
    fingerprint_groups: str
    user_ids: list[str]
    url: str
    fingerprint_svg: Markup
    url_svg: Markup


def verification_url(base_url: str, event_id: str, fingerprint: str) -> str:
    """The page a phone's camera app opens from the badge."""
    return f"{base_url}/e/{event_id}/k/{fingerprint}"


def badges_for(event: Event, base_url: str) -> list[Badge]:
    """One badge per key of the event, in the order of event.keys.

    The keys come with their attendees and user IDs in two queries more,
    not two per key; the QR codes are drawn once per process (qr_svg).
    """
    keys = db.session.scalars(
        select(Key)
        .where(Key.event_id == event.id)
        .options(joinedload(Key.attendee), selectinload(Key.user_ids))
        .order_by(Key.id)
    ).unique()
    badges = []
    for key in keys:
        url = verification_url(base_url, event.id, key.fingerprint)
        badges.append(
            Badge(
                number=key.list_number,
                name=key.attendee.name,
                fingerprint=key.fingerprint,
                fingerprint_groups=group_fingerprint(key.fingerprint),
                user_ids=[uid.text for uid in key.user_ids],
                url=url,
                # qr_svg builds markup from the payload only (hex, a URL).
                fingerprint_svg=Markup(qr_svg(fingerprint_payload(key.fingerprint))),
                url_svg=Markup(qr_svg(url)),
            )
        )
    return badges
