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
import json
import re
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
from keyparty.gpg import INTO_OWN_KEYRING
from keyparty.gpg import GnuPGError
from keyparty.gpg import GnuPGHome


class SigningError(RuntimeError):
    """Stops `keyparty sign` with a plain sentence for the signer."""


@dataclass(frozen=True)
class Task:
    """One gpg run: certify these user IDs of one key in one context."""

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
    match = re.match(r"^(https?://[^/]+)/e/([^/?#]+)", source)
    if not match:
        raise SigningError(
            f"{source} is not an event address: give http(s)://HOST/e/EVENT (shown on your "
            "phone), or a bundle file downloaded from your phone page."
        )
    return f"{match.group(1)}/api/e/{match.group(2)}/{path}"


def load_bundle(source: str, token: str | None = None) -> dict:
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
        except urllib.error.URLError as error:
            raise SigningError(f"Cannot reach {source}: {error.reason}") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise SigningError(f"No bundle file {source}.")
        try:
            bundle = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise SigningError(f"{source} is not a keyparty signing bundle.") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise SigningError(f"{source} is not a keyparty signing bundle ({FORMAT}).")
    return bundle


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return json.load(error).get("error", error.reason)
    except ValueError:
        return str(error.reason)


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


def check_bundle(bundle: dict, now: datetime | None = None) -> None:
    """The bundle must be what the signer confirmed: digests of its own list,
    and every verified key on that list with the same fingerprint; and the
    signing window must still be open (D3)."""
    ends = datetime.fromisoformat(bundle["event"]["signing_window_ends"])
    if (now or datetime.now(UTC)) > ends:
        raise SigningError(
            f"D3: the signing window of this event ended on {ends:%Y-%m-%d}: a verification "
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
    """Group the verifications into gpg runs, leaving out what is already made.

    `made` holds (signer, fingerprint, user ID, context) certified before,
    so an interrupted run carries on without certifying anything twice.
    """
    groups: dict[tuple[str, str, str, int], list[str]] = {}
    for v in bundle["verifications"]:
        for signer in signers:
            if (signer, v["fingerprint"], v["user_id"], v["context"]) in made:
                continue
            groups.setdefault((signer, v["fingerprint"], v["context"], v["level"]), []).append(
                v["user_id"]
            )
    return [Task(s, f, c, lvl, tuple(uids)) for (s, f, c, lvl), uids in groups.items()]


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
                uid = entry.user_id.decode("utf-8", "replace")
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
    """Import the verified keys and certify every planned task, one gpg run each."""
    home.import_keys("".join(bundle["keys"].values()).encode(), INTO_OWN_KEYRING)
    made = certifications_made(home, bundle, signers)
    report = Report()
    for _signer, fingerprint, uid, context in made:
        report.skipped.append((fingerprint, uid, context, "already certified in this context"))
    certified_by = {(s, f, u) for s, f, u, _ in made}
    event = bundle["event"]
    for task in plan(bundle, signers, set(made)):
        # Another context on a user ID this key certified already: gpg would
        # say ALREADY_SIGNED and do nothing; force makes the second one.
        force = any((task.signer, task.fingerprint, uid) in certified_by for uid in task.user_ids)
        outcome = home.certify(
            task.signer,
            task.fingerprint,
            list(task.user_ids),
            task.level,
            event["cert_expiry_days"],
            {event["context_notation"]: task.context, event["event_notation"]: event["id"]},
            event["policy_url"],
            force=force,
            passphrase=passphrase,
        )
        problem = outcome.problem
        if problem in ("wrong passphrase",) or (problem and "agent" in problem):
            raise SigningError(f"Stopped: {problem}. Nothing is lost: run keyparty sign again.")
        for uid in task.user_ids:
            if problem:
                report.failed.append((task.fingerprint, uid, task.context, problem))
            else:
                report.made.append((task.fingerprint, uid, task.context))
            certified_by.add((task.signer, task.fingerprint, uid))
        if progress:
            progress(task)
    return report


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
        minimal = openpgp.minimal_key(block, uid.encode("utf-8"), [signature])
        uid_tag = hashlib.sha256(uid.encode()).hexdigest()[:8]
        path = out / f"{fingerprint}-{uid_tag}-{context}-by-{signer[-8:]}.asc"
        path.write_text(openpgp.armor(minimal), encoding="utf-8")
        files.append(path)
    return files


def upload(bundle: dict, token: str, files: list[Path]) -> list[dict]:
    """Send each certification on its own (no list-taking API, P2)."""
    url = api_url(bundle["event"]["url"], "certifications")
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
        except urllib.error.URLError as error:
            raise SigningError(
                f"Upload stopped: {error.reason}. The files are in {path.parent}; run keyparty "
                "sign again later, or give them to the host."
            ) from None
    return outcomes
