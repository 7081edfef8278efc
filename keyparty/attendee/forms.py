from flask_wtf.file import FileField
from wtforms import BooleanField
from wtforms import EmailField
from wtforms import RadioField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import Email
from wtforms.validators import Length
from wtforms.validators import Optional

from keyparty.forms import Form
from keyparty.i18n import lazy_gettext
from keyparty.translatable import N_

REQUIRED = lazy_gettext("Please fill this in.")
TOO_LONG = lazy_gettext("This is too long.")


class RegistrationForm(Form):
    name = StringField(
        N_("Your name"), validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)]
    )
    email = EmailField(
        N_("Email (optional)"),
        validators=[
            Optional(),
            Email(
                message=lazy_gettext("This is not an email address."),
                check_deliverability=False,
            ),
            Length(max=320, message=TOO_LONG),
        ],
    )
    key_text = TextAreaField(N_("Your public key (armored)"), validators=[Optional()])
    key_file = FileField(N_("…or upload your public key file"), validators=[Optional()])

    def key_data(self) -> bytes:
        upload = self.key_file.data
        if upload and getattr(upload, "filename", ""):
            return upload.read()
        return (self.key_text.data or "").encode("utf-8")


class ConfirmEntryForm(Form):
    """T4: the owner checks their own entry against the frozen list."""

    entry_correct = BooleanField(validators=[DataRequired()])
    digest_matches = BooleanField(validators=[DataRequired()])


class VerificationForm(Form):
    """One decision about one user ID (P2): the context and how you know them."""

    context = RadioField(validators=[DataRequired()])
    basis = RadioField(validators=[DataRequired()])


class ButtonForm(Form):
    """A button with nothing to fill in (withdraw), CSRF-protected."""


class ProofForm(Form):
    """O2: the answer to a challenge, one of the two."""

    code = StringField(
        N_("The code from the decrypted message"),
        validators=[Optional(), Length(max=40, message=TOO_LONG)],
    )
    signed = TextAreaField(
        N_("…or the signed text (or detached signature)"),
        validators=[Optional(), Length(max=64 * 1024, message=TOO_LONG)],
    )


class RejoinForm(Form):
    """O2: which key to prove possession of, on this phone."""

    fingerprint = StringField(
        N_("Your key's fingerprint (or the text of your badge's code)"),
        validators=[DataRequired(REQUIRED), Length(max=400, message=TOO_LONG)],
    )


class JoinForm(Form):
    """Spends a join link: only a POST from the link's own page does (O2)."""

    switch = BooleanField()
