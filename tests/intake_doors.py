"""The two doors a certification comes in by: the upload API (`keyparty sign`)
and `keyparty intake EVENT FILE` (files that came by mail or USB stick).

The `door` fixture (tests/conftest.py) is parametrized over both, so a test of
an intake rule runs once through each; a Door answers what the person at that
door sees.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from keyparty.extensions import db
from keyparty.registration import hash_token
from tests.conftest import attendee_named


@dataclass
class Answer:
    status: str  # "accepted", "refused", "already accepted"
    rule: str | None
    message: str
    ok: bool  # HTTP 200 with no refusal / exit code 0


class Door:
    def __init__(self, kind: str, app, runner, event, folder) -> None:
        self.kind, self.app, self.runner, self.event, self.folder = kind, app, runner, event, folder
        self._names = itertools.count(1)

    def __call__(self, data: bytes, sender: str = "Alice") -> Answer:
        """Upload `data` as `sender` (API) or hand it to `keyparty intake` as a file,
        where the issuing key names the signer."""
        answer = self._api(data, sender) if self.kind == "api" else self._file(data)
        db.session.expire_all()
        return answer

    def _api(self, data: bytes, sender: str) -> Answer:
        attendee = attendee_named(self.event, sender)
        token = f"token-{attendee.id}"
        attendee.signing_token_sha256 = hash_token(token)
        db.session.commit()
        response = self.app.test_client().post(
            f"/api/e/{self.event.id}/certifications",
            data=data,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.data
        (outcome,) = response.json["outcomes"]
        refused = outcome["status"] == "refused"
        return Answer(outcome["status"], outcome["rule"], outcome["message"], not refused)

    def _file(self, data: bytes) -> Answer:
        path = self.folder / f"upload-{next(self._names)}.asc"
        path.write_bytes(data)
        result = self.runner.invoke(args=["intake", self.event.id, str(path)])
        (line,) = [line for line in result.output.splitlines() if f" {path.name}: " in line]
        if line.startswith("already accepted"):
            status, rule, message = "already accepted", None, line
        elif line.startswith("refused"):
            _, _what, rule, message = line.split(": ", 3)
            status = "refused"
        else:
            status, rule, message = line.split()[0], None, line
        assert (result.exit_code != 0) == (status == "refused"), result.output
        return Answer(status, rule, message, result.exit_code == 0)
