"""Flask extensions, created here once and bound to the app in create_app."""

from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


# Views keep using what they just committed (names for a message, ids for a
# redirect): reloading it would open a second transaction, on SQLite a second
# write lock, per request.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
csrf = CSRFProtect()
