"""Run inside `unshare -rm` (its own mount namespace): a tiny tmpfs holds the
instance; fill it, then make it read-only, and register a key each time.
Prints one JSON line of what a phone saw and what was stored."""

import json
import os
import subprocess
import sys
from pathlib import Path

mount, key_file = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount], check=True)
os.environ["KEYPARTY_INSTANCE"] = os.path.join(mount, "instance")

from keyparty import create_app  # noqa: E402
from keyparty import events  # noqa: E402
from keyparty.extensions import db  # noqa: E402
from keyparty.models import Key  # noqa: E402

app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "PUBLIC_URL": "http://kp.test"})
key = Path(key_file).read_text(encoding="utf-8")
seen = {}
with app.app_context():
    event_id = events.create_event("Full Party").id
    db.session.commit()
    db.session.remove()
client = app.test_client()
with open(os.path.join(mount, "filler"), "wb", buffering=0) as filler:
    try:
        while True:
            filler.write(b"\0" * 65536)
    except OSError:
        pass
response = client.post(f"/e/{event_id}/register", data={"name": "Hanako", "key_text": key})
seen["full"] = [response.status_code, response.get_data(as_text=True)]
os.unlink(os.path.join(mount, "filler"))
with app.app_context():
    seen["keys_after_full"] = db.session.query(Key).count()
    seen["home_keys"] = len(events.event_home(events.get_event(event_id)).list_keys())
    db.session.remove()
    db.engine.dispose()
subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
response = client.post(f"/e/{event_id}/register", data={"name": "Hanako", "key_text": key})
seen["read_only"] = [response.status_code, response.get_data(as_text=True)]
# (SQLite cannot open a WAL database on a read-only file system at all: count
# what was stored once it is writable again.)
subprocess.run(["mount", "-o", "remount,rw", mount], check=True)
with app.app_context():
    seen["keys_after_read_only"] = db.session.query(Key).count()
print(json.dumps(seen))
