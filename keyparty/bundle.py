"""The signing bundle: what `keyparty sign` needs, for one signer.

It holds the frozen party list (so the signer checks its digest against the
one read aloud), the signer's own unwithdrawn verifications, the verified
keys as registered, and the event's certification settings. It holds
nothing about anyone else's verifications (T2, P5).
"""

from __future__ import annotations

from keyparty.events import policy_url
from keyparty.intake import notation_names
from keyparty.intake import signing_window
from keyparty.models import Attendee
from keyparty.verification import active_verifications

FORMAT = "keyparty-signing-bundle/1"


def bundle_for(signer: Attendee, base_url: str) -> dict:
    event = signer.event
    verifications = active_verifications(signer)
    keys = {v.user_id.key for v in verifications}
    context_name, event_name = notation_names(event)
    _, window_end = signing_window(event)
    return {
        "format": FORMAT,
        "event": {
            "id": event.id,
            "name": event.name,
            "state": event.state,
            "url": f"{base_url}/e/{event.id}",
            "policy_url": policy_url(event),
            "context_notation": context_name,
            "event_notation": event_name,
            "cert_expiry_days": event.cert_expiry_days,
            "signing_window_ends": window_end.isoformat(),
        },
        "party_list": event.partylist,
        "party_list_sha256": event.partylist_sha256,
        "party_list_sha512": event.partylist_sha512,
        "signer": {
            "name": signer.name,
            "fingerprints": [key.fingerprint for key in signer.keys],
        },
        "verifications": [
            {
                "fingerprint": v.user_id.key.fingerprint,
                "user_id": v.user_id.text,
                "context": v.context,
                "level": v.level,
            }
            for v in verifications
        ],
        "keys": {key.fingerprint: key.armored for key in sorted(keys, key=lambda k: k.fingerprint)},
    }
