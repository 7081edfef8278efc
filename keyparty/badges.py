"""Badges: what is printed for each key on the frozen list."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from keyparty.models import Event
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
    badges = []
    for key in event.keys:
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
