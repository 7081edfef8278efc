"""`keyparty sign`: on the signer's own machine, turn their verifications into
certifications with their own key and their own GnuPG.

No Flask, no database: it reads a signing bundle (from the event's server
or a file), asks the signer to confirm the party list digest, certifies
each verified user ID through the GnuPG adapter, writes one file per
certification and uploads them. It never reads secret key material: gpg and
its agent do the signing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

from keyparty import openpgp
from keyparty.bundle import FORMAT
from keyparty.escaping import for_filename
from keyparty.escaping import for_terminal
from keyparty.gpg import INTO_OWN_KEYRING
from keyparty.gpg import PINENTRY_ADVICE
from keyparty.gpg import GnuPGError
from keyparty.gpg import GnuPGHome
from keyparty.rules import moment_text


class SigningError(RuntimeError):
    """Stops `keyparty sign` with a plain sentence for the signer."""


@dataclass(frozen=True)
class Task:
    """One gpg run: certify one user ID of one key in one context.

    One user ID per run, so that one user ID gpg cannot certify never takes
    the others down with it (gpg aborts the whole run on the first one).
    `user_ids` is a one-element tuple.
    """

    signer: str
    fingerprint: str
    context: str
    level: int
    user_ids: tuple[str, ...]


@dataclass
class Report:
    made: list[tuple[str, str, str]] = field(default_factory=list)  # (fingerprint, uid, context)
    skipped: list[tuple[str, str, str, str]] = field(default_factory=list)  # … and why
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# -- the bundle ------------------------------------------------------------


def api_url(source: str, path: str) -> str:
    """http://host:8000/e/EVENT → http://host:8000/api/e/EVENT/<path>."""
    base, _, event = server_of(source).rpartition("/e/")
    return f"{base}/api/e/{event}/{path}"


def server_of(url: str) -> str:
    """The event address http(s)://HOST/e/EVENT that `url` starts with, or a SigningError."""
    match = re.match(r"^(https?://[^/]+)/e/([^/?#]+)", url, re.IGNORECASE)
    if not match:
        raise SigningError(
            f"{for_terminal(url)} is not an event address: give http(s)://HOST/e/EVENT "
            "(shown on your phone), or a bundle file downloaded from your phone page."
        )
    return f"{match.group(1).lower()}/e/{match.group(2)}"


def check_server(bundle: dict, server: str) -> None:
    """Refuse a bundle that names another server than the one the signer named:
    the signing token goes only where the signer said (never where a bundle says)."""
    named = bundle["event"].get("url") or ""
    try:
        same = server_of(named) == server_of(server)
    except SigningError:
        same = False
    if not same:
        raise SigningError(
            f"This bundle is for {for_terminal(named) or 'no server'}, not {for_terminal(server)}: "
            "keyparty sends your signing token and certifications only to the server you "
            "name. Download the bundle again from your phone page on that server, or name "
            "the bundle's own server. Nothing was certified."
        )


def load_bundle(source: str, token: str | None = None) -> dict:
    """The signing bundle from the event address SOURCE (with the signing token)
    or from a bundle file. A bundle fetched from a server must name that server."""
    if source.startswith(("http://", "https://")):
        if not token:
            raise SigningError(
                "Signing online needs your signing token: --token TOKEN (on your phone)."
            )
        request = urllib.request.Request(
            api_url(source, "bundle"), headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                bundle = json.load(response)
        except urllib.error.HTTPError as error:
            raise SigningError(f"The server refused the bundle: {_error_text(error)}") from None
        except ValueError:
            raise SigningError(f"{for_terminal(source)} did not send a signing bundle.") from None
        except NO_ANSWER as error:
            raise SigningError(
                f"Cannot reach {for_terminal(source)}: {_no_answer(error)}"
            ) from None
    else:
        path = Path(source)
        if not path.is_file():
            raise SigningError(f"No bundle file {for_terminal(source)}.")
        try:
            bundle = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise SigningError(
                f"{for_terminal(source)} is not a keyparty signing bundle."
            ) from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise SigningError(f"{for_terminal(source)} is not a keyparty signing bundle ({FORMAT}).")
    if source.startswith(("http://", "https://")):
        check_server(bundle, source)
    return bundle


def _post_json(url: str, body: dict, timeout: int = 30) -> tuple[int, dict]:
    """POST a JSON object; (HTTP status, JSON answer), errors included."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {"error": str(error.reason)}
    except ValueError:
        return 502, {"error": "the server's answer was not JSON"}
    except NO_ANSWER as error:
        raise SigningError(f"Cannot reach {for_terminal(url)}: {_no_answer(error)}") from None


def pair(
    source: str,
    fingerprints: list[str],
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Get a signing token by pairing with the signer's phone (RFC 8628 device flow).

    Asks the server for a short code for these secret keys' fingerprints, shows
    it with `say`, then polls at the server's interval until the phone allows
    (returns the token) or denies, or the code expires (SigningError).
    """
    status, started = _post_json(api_url(source, "pairing"), {"fingerprints": fingerprints})
    if status != 200:
        raise SigningError(f"The server refused to pair: {started.get('error', status)}")
    say(
        f"Code {started['user_code']}: on your phone, open your keyparty page "
        f"({started['verification_uri']}) and allow the computer that shows this code."
    )
    interval = max(1, int(started.get("interval", 5)))
    while True:
        sleep(interval)
        status, answer = _post_json(
            api_url(source, "pairing/token"), {"device_code": started["device_code"]}
        )
        if status == 200 and answer.get("token"):
            say("Allowed on the phone.")
            return answer["token"]
        code = answer.get("error")
        if code == "authorization_pending":
            continue
        if code == "slow_down":
            interval += 5
            continue
        raise SigningError(answer.get("message") or f"Pairing failed: {code or status}")


# No usable answer: unreachable (URLError), or the connection dropped, reset or
# timed out after the request went out (urllib lets those through unwrapped:
# RemoteDisconnected, ConnectionResetError, TimeoutError, IncompleteRead).
# HTTPError, a real answer, is caught before these.
NO_ANSWER = (OSError, http.client.HTTPException)


def _no_answer(error: BaseException) -> str:
    """What went wrong with a request that got no usable answer, in a few words."""
    if isinstance(error, urllib.error.URLError):
        return for_terminal(str(error.reason))
    if isinstance(error, http.client.RemoteDisconnected | ConnectionResetError):
        return "the server closed the connection without answering"
    if isinstance(error, TimeoutError):
        return "the server did not answer in time"
    return for_terminal(str(error) or type(error).__name__)


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return for_terminal(str(json.load(error).get("error", error.reason)))
    except (ValueError, AttributeError):
        return for_terminal(str(error.reason))


def party_list_digests(bundle: dict) -> dict[str, str]:
    data = bundle["party_list"].encode("utf-8")
    return {"SHA256": hashlib.sha256(data).hexdigest(), "SHA512": hashlib.sha512(data).hexdigest()}


def check_digest(bundle: dict, digest: str) -> bool:
    given = "".join(digest.split()).lower()
    return given in party_list_digests(bundle).values()


def write_party_list(bundle: dict, out: Path) -> Path:
    """The bundle's party list as the file everyone has (exact bytes), in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    event_id = re.sub(r"[^A-Za-z0-9._-]", "_", str(bundle["event"]["id"]))[:64] or "event"
    path = out / f"partylist-{event_id}.txt"
    path.write_bytes(bundle["party_list"].encode("utf-8"))
    return path


def listed_fingerprints(party_list: str) -> set[str]:
    """The fingerprints printed in the party list (groups of four hex digits)."""
    found = re.findall(r"(?m)^\s+((?:[0-9A-F]{4}\s{1,2}){9}[0-9A-F]{4})\s*$", party_list)
    return {"".join(f.split()) for f in found}


def window_end_text(bundle: dict) -> str:
    """D3: the end of the signing window, as intake states it (rules.moment_text)."""
    return moment_text(datetime.fromisoformat(bundle["event"]["signing_window_ends"]))


def check_bundle(bundle: dict, now: datetime | None = None) -> None:
    """The bundle must be what the signer confirmed: digests of its own list,
    and every verified key on that list with the same fingerprint; and the
    signing window must still be open (D3)."""
    ends = datetime.fromisoformat(bundle["event"]["signing_window_ends"])
    if (now or datetime.now(UTC)) > ends:
        raise SigningError(
            f"D3: the signing window of this event ended on {window_end_text(bundle)}: a verification "
            "goes stale, so nothing is certified now. Verify again at a new event."
        )
    digests = party_list_digests(bundle)
    if digests["SHA256"] != bundle.get("party_list_sha256"):
        raise SigningError("The party list in the bundle does not match its own digest.")
    on_list = listed_fingerprints(bundle["party_list"])
    for verification in bundle["verifications"]:
        fingerprint = verification["fingerprint"]
        if fingerprint not in on_list:
            raise SigningError(f"{fingerprint} is not on the frozen party list: refusing to sign.")
        blocks = openpgp.read_keys(bundle["keys"][fingerprint].encode())
        if [b.fingerprint for b in blocks] != [fingerprint]:
            raise SigningError(
                f"The key sent for {fingerprint} has another fingerprint: refusing to sign."
            )


# -- certifying --------------------------------------------------------------


def plan(bundle: dict, signers: list[str], made: set[tuple[str, str, str, str]]) -> list[Task]:
    """One gpg run per verified user ID, context and signing key, leaving out
    what is already made.

    `made` holds (signer, fingerprint, user ID, context) certified before at this
    event, so an interrupted run carries on without certifying anything twice.
    """
    tasks = []
    for v in bundle["verifications"]:
        for signer in signers:
            if (signer, v["fingerprint"], v["user_id"], v["context"]) not in made:
                tasks.append(
                    Task(signer, v["fingerprint"], v["context"], v["level"], (v["user_id"],))
                )
    return tasks


def certifications_made(
    home: GnuPGHome, bundle: dict, signers: Iterable[str]
) -> dict[tuple[str, str, str, str], openpgp.Signature]:
    """This event's certifications already in the signer's keyring, by who/what/context."""
    event = bundle["event"]
    signers = set(signers)
    found = {}
    exported = home.export(bundle["keys"])
    for block in openpgp.read_keys(exported) if exported else []:
        for entry in openpgp.user_id_signatures(block):
            for signature in entry.signatures:
                if signature.issuer_fingerprint not in signers:
                    continue
                if signature.notation(event["event_notation"]) != event["id"].encode():
                    continue
                context = (signature.notation(event["context_notation"]) or b"").decode()
                uid = entry.user_id.decode("utf-8", "surrogateescape")
                found[(signature.issuer_fingerprint, block.fingerprint, uid, context)] = signature
    return found


def choose_signers(home: GnuPGHome, bundle: dict, local_users: list[str]) -> list[str]:
    """The signer's keys that will certify: usable secret keys registered at the event."""
    registered = bundle["signer"]["fingerprints"]
    wanted = [u.replace(" ", "").upper() for u in local_users] or registered
    try:
        secret = {k.fingerprint: k for k in home.secret_keys()}
    except GnuPGError as problem:
        raise SigningError(f"{problem}. Nothing was certified.") from None
    for fingerprint in wanted:
        if fingerprint not in registered:
            raise SigningError(
                f"{fingerprint} is not your key registered at this event "
                f"({', '.join(registered)}): certifications must come from it."
            )
        key = secret.get(fingerprint)
        if key is not None and key.primary_secret_offline:
            raise SigningError(
                f"Only subkeys of {fingerprint} are on this machine: its primary secret key is "
                "offline, and certifying needs the primary key. Download the signing bundle "
                "from your phone page and run `keyparty sign BUNDLE --no-upload` on the "
                "machine that holds the primary key; bring the files back and upload them. "
                "Nothing was certified."
            )
        if key is None:
            raise SigningError(
                f"No secret key for {fingerprint} in {home.path}: run keyparty sign where "
                "your secret key is (--homedir DIR), or import it there."
            )
        if key.revoked:
            raise SigningError(f"Your key {fingerprint} is revoked: it cannot certify.")
        if key.expired:
            raise SigningError(
                f"Your key {fingerprint} has expired: extend it "
                f"(`gpg --quick-set-expire {fingerprint} 2y`) and run keyparty sign again."
            )
    return wanted


def certify_all(
    home: GnuPGHome,
    bundle: dict,
    signers: list[str],
    passphrase: str | None = None,
    progress: Callable[[Task], None] | None = None,
) -> Report:
    """Import the verified keys and certify every planned task, one gpg run each.

    Each user ID has its own outcome in the report. A renewal (this signer
    certified the user ID at an earlier event) makes a new certification: gpg is
    always told to add one (--force-sign-key) where it would otherwise answer
    ALREADY_SIGNED and do nothing; what this event already holds is skipped.
    Raises SigningError when no certification can succeed (wrong passphrase, no
    agent, no terminal for pinentry): nothing is lost, run again.
    """
    home.import_keys("".join(bundle["keys"].values()).encode(), INTO_OWN_KEYRING)
    made = certifications_made(home, bundle, signers)
    report = Report()
    for _signer, fingerprint, uid, context in made:
        report.skipped.append((fingerprint, uid, context, "already certified in this context"))
    expired = _expired_targets(home, bundle)
    event = bundle["event"]
    for task in plan(bundle, signers, set(made)):
        (uid,) = task.user_ids
        if task.fingerprint in expired:
            report.failed.append((task.fingerprint, uid, task.context, expired[task.fingerprint]))
            if progress:
                progress(task)
            continue
        outcome = home.certify(
            task.signer,
            task.fingerprint,
            [uid],
            task.level,
            event["cert_expiry_days"],
            {event["context_notation"]: task.context, event["event_notation"]: event["id"]},
            event["policy_url"],
            force=True,
            passphrase=passphrase,
        )
        problem = outcome.problem
        if problem == "wrong passphrase" or (
            problem and ("agent" in problem or problem == PINENTRY_ADVICE)
        ):
            raise SigningError(f"Stopped: {problem}. Nothing is lost: run keyparty sign again.")
        if problem:
            report.failed.append((task.fingerprint, uid, task.context, problem))
        else:
            report.made.append((task.fingerprint, uid, task.context))
        if progress:
            progress(task)
    return report


def _expired_targets(home: GnuPGHome, bundle: dict) -> dict[str, str]:
    """Keys to certify that expired since they were registered: fingerprint -> why.

    gpg's own answer (KEYEXPIRED) does not say whose key expired; this does.
    """
    found = {}
    for key in home.list_keys(list(bundle["keys"])):
        if key.expired or (key.expires and key.expires <= datetime.now(UTC)):
            when = f" on {key.expires:%Y-%m-%d}" if key.expires else ""
            found[key.fingerprint] = (
                f"the key being certified ({key.fingerprint}) expired{when}, after the event: "
                "nothing can certify it until its owner extends it "
                "(`gpg --quick-set-expire FINGERPRINT 2y`) and sends it again"
            )
    return found


def write_files(home: GnuPGHome, bundle: dict, signers: list[str], out: Path) -> list[Path]:
    """One file per certification: the key with only that user ID, its
    self-signatures and that one certification (what intake expects)."""
    out.mkdir(parents=True, exist_ok=True)
    made = certifications_made(home, bundle, signers)
    blocks = {b.fingerprint: b for b in openpgp.read_keys(home.export(bundle["keys"]))}
    files = []
    for (signer, fingerprint, uid, context), signature in sorted(
        made.items(), key=lambda item: item[0]
    ):
        block = blocks[fingerprint]
        exact = uid.encode("utf-8", "surrogateescape")
        minimal = openpgp.minimal_key(block, exact, [signature])
        uid_tag = hashlib.sha256(exact).hexdigest()[:8]
        name = f"{fingerprint}-{uid_tag}-{for_filename(context, 20)}-by-{signer[-8:]}.asc"
        path = out / name
        path.write_text(openpgp.armor(minimal), encoding="utf-8")
        files.append(path)
    return files


def upload(server: str, token: str, files: list[Path]) -> list[dict]:
    """Send each certification on its own (no list-taking API, P2) to `server`,
    the event address the signer named (never one read from a bundle)."""
    url = api_url(server, "certifications")
    outcomes = []
    for path in files:
        request = urllib.request.Request(
            url,
            data=path.read_bytes(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pgp-keys"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                outcomes.extend(json.load(response)["outcomes"])
        except urllib.error.HTTPError as error:
            outcomes.append({"file": path.name, "status": "error", "message": _error_text(error)})
        except (ValueError, KeyError, TypeError):
            message = "the server's answer was not a keyparty answer"
            outcomes.append({"file": path.name, "status": "error", "message": message})
        except NO_ANSWER as error:
            raise SigningError(
                f"Upload stopped: {_no_answer(error)}. The files are in "
                f"{for_terminal(str(path.parent))}; run keyparty sign again later (what was "
                "taken stays taken), or give them to the host."
            ) from None
    return outcomes
