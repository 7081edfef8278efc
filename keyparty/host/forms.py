from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import BooleanField
from wtforms import DateField
from wtforms import HiddenField
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional


class CreateEventForm(FlaskForm):
    name = StringField("Event name", validators=[DataRequired(), Length(max=200)])
    date = DateField("Date of the event", validators=[Optional()])


class ImportForm(FlaskForm):
    files = MultipleFileField(
        "Keyring files (armored or binary) and CSV sign-up sheets",
        validators=[DataRequired(message="Choose at least one file to import.")],
    )
    hand_out = BooleanField(
        "Show plain join links to hand out face to face (instead of sending them "
        "encrypted to each key)"
    )


class ConfirmForm(FlaskForm):
    """A step the host confirms on a page of its own (freeze with unproven entries)."""

    confirm = HiddenField()


class StepForm(FlaskForm):
    """A lifecycle button: nothing to fill in, but CSRF-protected."""


class LoginForm(FlaskForm):
    password = PasswordField("Host password", validators=[DataRequired()])


class SettingsForm(FlaskForm):
    """C1 contexts and P4 pace of one event (same as `keyparty event set`)."""

    contexts = StringField("Contexts (comma-separated)", validators=[DataRequired()])
    pace_gap = IntegerField("Shortest gap between two people (s)", validators=[DataRequired()])
    pace_window = IntegerField("Pace window (s)", validators=[DataRequired()])
    pace_max = IntegerField("Most people in one window", validators=[DataRequired()])
