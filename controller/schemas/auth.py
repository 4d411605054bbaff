"""Signing in (seed 001/002's /api/v1/auth): what the session, 2FA and registration routes take and return.

Field names follow seed 001 (no "success" wrapper: the object itself; errors are ``{"error": {...}}``). The
username, email and password rules are the accounts' (``controller.schemas.users``), so an account made by an
administrator and one that registered itself obey the same ones. The password policy itself is the service's
(a 422 naming the field and every rule broken).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from controller.schemas.users import AccountStatus, Email, FullName, Password, RoleName, Username

#: what a presented code may be: a 6-digit TOTP code, a recovery code (xxxx-xxxx-xxxx-xxxx) or an emailed code
CodeText = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 -]+$")]
#: a login name as typed: any text the account rules could have made (checked against nothing but the database)
LoginName = Annotated[str, Field(min_length=1, max_length=254)]
#: an opaque token as presented (a refresh token is "vpr_" and 43 characters; a JWT some hundreds)
TokenText = Annotated[str, Field(min_length=1, max_length=4096)]


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: LoginName
    password: Password
    remember_me: StrictBool = Field(default=False, description="a long session (auth.remember_me_ttl) instead of "
                                                               "auth.session_ttl")


class VerifyTwoFactorBody(BaseModel):
    """The second step of a login; the challenge (``mfa_token``) comes as ``Authorization: Bearer``."""

    model_config = ConfigDict(extra="forbid")
    code: CodeText
    method: Literal["totp", "recovery"] = "totp"
    mfa_token: TokenText | None = Field(default=None,
                                        description="the login's mfa_token, when not sent as Authorization: Bearer")


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: TokenText | None = Field(default=None, description="or send it as Authorization: Bearer")


class LogoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: StrictBool = Field(default=False, description="end every session of the account, not only this one")


class ChangePasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: Password
    new_password: Password


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: CodeText


class DisableTwoFactorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: Password
    code: CodeText = Field(description="a current TOTP code or an unused recovery code")


class RegisterBody(BaseModel):
    """Seed 002's self-registration: a ``user`` account, inactive until its email is verified."""

    model_config = ConfigDict(extra="forbid")
    username: Username
    email: Email
    password: Password
    full_name: FullName = ""


class VerifyEmailBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    code: CodeText


class ResetRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email


class ResetPasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    code: CodeText
    new_password: Password


# -- answers -------------------------------------------------------------------------------------------------

class UserOut(BaseModel):
    """The signed-in account (seed 001's ``user`` of a login answer)."""

    id: int
    username: str
    email: str | None
    role: RoleName
    permissions: list[str] = Field(description='what the account may do ("*": everything)')
    two_factor_enabled: bool
    last_login: str | None
    must_change_password: bool


class MeOut(UserOut):
    full_name: str
    status: AccountStatus
    email_verified: bool


class TokensOut(BaseModel):
    """A completed sign-in."""

    access_token: str = Field(description="a JWT for Authorization: Bearer, good for expires_in seconds")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str = Field(description="single use: POST /api/v1/auth/refresh answers with a new one")
    refresh_expires_in: int = Field(description="seconds until the session ends whatever is refreshed")
    user: UserOut


class TwoFactorChallengeOut(BaseModel):
    """The password was right; the second factor is next (POST /api/v1/auth/verify-2fa)."""

    two_factor_required: Literal[True] = True
    mfa_token: str
    expires_in: int
    methods: list[Literal["totp", "recovery"]]


class TwoFactorSetupRequiredOut(BaseModel):
    """The password was right, but this account's role must enrol 2FA first: POST /api/v1/auth/2fa/setup and
    /2fa/enable with ``Authorization: Bearer <setup_token>``; enabling answers with the tokens."""

    two_factor_setup_required: Literal[True] = True
    setup_token: str
    expires_in: int


class TwoFactorSetupOut(BaseModel):
    secret: str = Field(description="base32, for typing into an authenticator app")
    otpauth_uri: str
    qr_code: str = Field(description="the otpauth URI as a QR code: an SVG data: URL")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="each works once; shown only now")


class EnabledOut(RecoveryCodesOut):
    """2FA is on. Enabled with a setup token (a required enrolment), the sign-in completes here too."""

    access_token: str | None = None
    token_type: Literal["bearer"] | None = None
    expires_in: int | None = None
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    user: UserOut | None = None


class TwoFactorStateOut(BaseModel):
    two_factor_enabled: bool


class RegisteredOut(BaseModel):
    status: Literal["verification_sent"] = "verification_sent"
    email: str
    expires_in: int = Field(description="seconds the emailed code is good for")


class VerifiedOut(BaseModel):
    username: str
    status: AccountStatus


class AcceptedOut(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str
