"""Alembic's environment for keyparty.

keyparty runs migrations itself (keyparty.migrations.bring_up_to_date) and
hands over its connection; Alembic's own command line (`alembic upgrade
head`, `alembic revision --autogenerate`, run from the checkout) connects to
the instance's database as keyparty would, without starting the app (which
would bring the database to the models' schema and leave autogenerate
nothing to compare).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine

from keyparty import models  # noqa: F401  (registers the tables)
from keyparty.config import database_url
from keyparty.config import instance_path_from_env
from keyparty.extensions import db


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        # SQLite alters a table by copying it: autogenerate writes batch steps.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    instance = Path(instance_path_from_env(os.path.join(os.getcwd(), "instance")))
    instance.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url(instance))
    with engine.connect() as connection:
        run(connection)
    engine.dispose()
