"""Host forms. Labels are marked N_ and translated where shown (`_(field.label.text)`)."""

from flask_wtf.file import MultipleFileField
from wtforms import BooleanField
from wtforms import DateField
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional

from keyparty.forms import Form
from keyparty.translatable import N_


class CreateEventForm(Form):
    name = StringField(N_("Event name"), validators=[DataRequired(), Length(max=200)])
    date = DateField(N_("Date of the event"), validators=[Optional()])


class ImportForm(Form):
    files = MultipleFileField(
        N_("Keyring files (armored or binary) and CSV sign-up sheets"),
        validators=[DataRequired(message="Choose at least one file to import.")],
    )
    hand_out = BooleanField(
        N_(
            "Show plain join links to hand out face to face (instead of sending them "
            "encrypted to each key)"
        )
    )


class IntakeForm(Form):
    files = MultipleFileField(
        N_("Certification files that came by mail or USB stick"),
        validators=[DataRequired()],
    )


class StepForm(Form):
    """A lifecycle button: nothing to fill in, but CSRF-protected."""


class LoginForm(Form):
    password = PasswordField(N_("Host password"), validators=[DataRequired()])


class SettingsForm(Form):
    """C1 contexts and P4 pace of one event (same as `keyparty event set`)."""

    contexts = StringField(N_("Contexts (comma-separated)"), validators=[DataRequired()])
    pace_gap = IntegerField(N_("Shortest gap between two people (s)"), validators=[DataRequired()])
    pace_window = IntegerField(N_("Pace window (s)"), validators=[DataRequired()])
    pace_max = IntegerField(N_("Most people in one window"), validators=[DataRequired()])


class CertificationSettingsForm(Form):
    """D1 expiry and cap, D3 signing window, C1 notation domain and policy URL."""

    expiry_days = IntegerField(N_("Certifications expire after (days)"), [DataRequired()])
    cap_days = IntegerField(N_("Longest expiry accepted (days)"), [DataRequired()])
    window_days = IntegerField(N_("Signing window after the event (days)"), [DataRequired()])
    notation_domain = StringField(N_("Notation domain"), [DataRequired(), Length(max=100)])
    policy_url = StringField(N_("Policy URL (empty: none)"), [Optional(), Length(max=500)])
