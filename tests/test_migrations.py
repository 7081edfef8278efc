"""Migrations: an instance made by the first release upgrades in place and its
events carry on; the revisions and the models describe the same schema."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from keyparty import create_app
from keyparty import events
from keyparty import exports
from keyparty import intake
from keyparty import migrations
from keyparty import signing
from keyparty.bundle import bundle_for
from keyparty.config import database_url
from keyparty.extensions import db
from keyparty.models import Certification
from keyparty.models import Event
from tests.conftest import attendee_named
from tests.conftest import on_postgres
from tests.conftest import press_join
from tests.test_cli import keyparty
from tests.test_publishing import button
from tests.test_publishing import gpg_sigs
from tests.test_verification import verify

RELEASE_1 = Path(__file__).resolve().parent / "fixtures" / "release1.sqlite3"
# Parents before children, so foreign keys hold while rows are copied.
TABLES = ("event", "attendee", "key", "user_id", "verification", "refusal", "certification")


def release_1_instance(instance: Path) -> None:
    """Put the first release's database (tests/fixtures/make_v1_db.py) into the
    instance: the file itself on SQLite; on PostgreSQL the release's tables
    (revision 0001, checked against the file below) holding the file's rows."""
    if not on_postgres():
        shutil.copyfile(RELEASE_1, instance / "keyparty.sqlite3")
        return
    engine = sa.create_engine(database_url(instance))
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config(connection), migrations.BASELINE)
        connection.exec_driver_sql("DROP TABLE alembic_version")
        release = sa.create_engine(f"sqlite:///{RELEASE_1}")
        for name in TABLES:
            # The baseline's own columns, not today's models' (they move on).
            table = sa.Table(name, sa.MetaData(), autoload_with=connection)
            columns = [c["name"] for c in sa.inspect(release).get_columns(name)]
            with release.connect() as source:
                rows = source.execute(sa.select(*[table.c[c] for c in columns])).mappings().all()
            if rows:
                # Only the release's columns: no defaults of later ones.
                bare = sa.table(name, *[sa.column(c, table.c[c].type) for c in columns])
                connection.execute(bare.insert(), [dict(r) for r in rows])
            if "id" in columns and name != "event":
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT max(id) FROM {name}))"
                )
        release.dispose()
    engine.dispose()


def schema_of(path: Path) -> dict[str, tuple]:
    """Each table's columns (name, type, not null, default, primary key), foreign
    keys and indexes (unique or not, columns), as SQLite reports them."""
    with sqlite3.connect(path) as connection:

        def rows(pragma: str, name: str) -> list[tuple]:
            return connection.execute(f"PRAGMA {pragma}('{name}')").fetchall()

        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'"
            )
        ]
        return {
            name: (
                [row[1:] for row in rows("table_info", name)],
                sorted(row[2:] for row in rows("foreign_key_list", name)),
                sorted(
                    (index[2], [c[2] for c in rows("index_info", index[1])], index[3])
                    for index in rows("index_list", name)
                ),
            )
            for name in tables
        }


@pytest.mark.skipif(on_postgres(), reason="the release's file is SQLite")
def test_the_baseline_revision_is_the_first_releases_schema(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'baseline.sqlite3'}")
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config(connection), migrations.BASELINE)
    engine.dispose()
    assert schema_of(tmp_path / "baseline.sqlite3") == schema_of(RELEASE_1)


def test_keyparty_knows_its_newest_revision():
    """A new revision's id goes into keyparty/migrations/__init__.py: HEAD."""
    assert migrations.head() == migrations.HEAD


def test_the_revisions_make_the_schema_the_models_describe(instance):
    """A model change without its revision fails here: write the revision with
    `alembic revision --autogenerate -m ...` (README, Development)."""
    engine = sa.create_engine(database_url(instance))
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config(connection), "head")
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    engine.dispose()
    assert differences == []


def test_a_release_1_instance_upgrades_in_place_and_its_events_carry_on(
    instance, alice_home, tmp_path
):
    release_1_instance(instance)
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    assert app.extensions["keyparty.schema"] == (
        "Upgraded the database made by keyparty 0.1 (schema version 1) to schema "
        f"revision {migrations.head()}."
    )
    with app.app_context():
        with db.engine.connect() as connection:
            assert migrations.current(connection) == migrations.head()
            # The first release refuses any other version: started on this
            # database by mistake, it says so instead of failing later.
            assert connection.exec_driver_sql("SELECT version FROM keyparty_schema").scalar() == 2

        # Verifying: Bob joins with a new link, verifies Alice; signing, then
        # Alice certifies with her own key and her certification is taken in.
        verifying = db.session.scalars(
            sa.select(Event).where(Event.name == "Release 1 Verifying")
        ).one()
        bob, alice = attendee_named(verifying, "Bob"), attendee_named(verifying, "Alice")
        token = events.new_join_link(verifying, bob.keys[0].fingerprint)
        phone = app.test_client()
        press_join(phone, token)
        assert "Bob Example" in phone.get("/me").text
        assert verify(phone, verifying, alice.keys[0]).status_code == 302
        assert (
            "You verified this"
            in phone.get(f"/e/{verifying.id}/k/{alice.keys[0].fingerprint}").text
        )
        assert events.take_step(verifying, "cool-off") is None
        assert events.take_step(verifying, "start-signing") is None
        verifying.date = date.today()
        db.session.commit()
        bundle = bundle_for(alice, "http://keyparty.test:8000")
        assert len(bundle["verifications"]) == 2, "made by the release: Bob's and Carol's"
        signers = signing.choose_signers(alice_home, bundle, [])
        report = signing.certify_all(alice_home, bundle, signers)
        assert len(report.made) == 2, report
        files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
        outcomes = intake.take_in(verifying, [(p.name, p.read_bytes()) for p in files])
        assert [o.status for o in outcomes] == ["accepted", "accepted"]

        # Signing: the release took in Alice's four certifications; Bob accepts
        # one on his phone and the export carries exactly it.
        signed = db.session.scalars(sa.select(Event).where(Event.name == "Release 1 Signing")).one()
        bob = attendee_named(signed, "Bob")
        alice_fpr = attendee_named(signed, "Alice").keys[0].fingerprint
        certification = db.session.scalars(
            sa.select(Certification).where(
                Certification.event_id == signed.id,
                Certification.context == "identity",
                Certification.user_id_text == "Bob Example <bob@example.org>",
            )
        ).one()
        token = events.new_join_link(signed, bob.keys[0].fingerprint)
        phone = app.test_client()
        press_join(phone, token)
        page = phone.post(
            f"/me/received/{certification.id}/accepted",
            data=button(phone, "/me/received"),
            follow_redirects=True,
        ).text
        assert "it is published with your key" in page
        listing = gpg_sigs(exports.keyring(signed))
        others = [b for b in listing.split("\npub:") if alice_fpr not in b.split("\nuid:")[0]]
        made_by_alice = sum(b.count(f"sig:!::22:{alice_fpr[-16:]}") for b in others)
        assert made_by_alice == 1, "the accepted one only"
        assert "context@keyparty.orgidentity" in listing
        db.session.remove()
        db.engine.dispose()


def test_a_database_from_a_newer_keyparty_is_refused_plainly(instance):
    app = create_app({"TESTING": True})
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with app.app_context():
        db.engine.dispose()
    result = keyparty(instance, "event", "list")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "schema revision 9999, which this keyparty does not know" in result.stderr
