"""Accounts (seed 001's /api/v1/users): what the API takes and returns.

The body models are the commands ``AccountService`` receives: an ``AccountUpdate`` changes only the fields it
was given (``model_fields_set``). Rules that need the database or the caller (unique names, permissions within
the role, who may change whom) are the service's and come back as 409s, 422s naming the field, or 403s.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from controller.schemas.patching import no_default, refuse_null
from controller.api import PageQuery
from controller.schemas.clients import NO_NUL, USERNAME

#: seed 001's account statuses: "inactive" is registered-not-verified or switched off; "suspended" is barred
AccountStatus = Literal["active", "inactive", "suspended"]
RoleName = Literal["admin", "manager", "viewer", "user"]
SortField = Literal["username", "email", "created_at", "last_login"]
#: a plausible address (the notifier finds out whether it is real); 254 is the longest SMTP allows
EMAIL = r"^[^@\s\x00]{1,64}@[^@\s\x00]+\.[^@\s\x00]+$"

Username = Annotated[str, Field(pattern=USERNAME, description="3-64 characters: letters, digits, _ . @ -; "
                                                              "unique regardless of case")]
Email = Annotated[str, Field(max_length=254, pattern=EMAIL, description="unique regardless of case")]
FullName = Annotated[str, Field(max_length=128, pattern=NO_NUL)]
#: the password is checked against the policy by the service (a 422 naming the field and every rule broken)
Password = Annotated[str, Field(min_length=1, max_length=256)]
PermissionNames = Annotated[list[Annotated[str, Field(max_length=64)]], Field(
    max_length=100, description='permission names ("nodes.view", ...; "*" for all): within the role\'s '
                                'defaults, never beyond; null: the role\'s defaults')]




class AccountBody(BaseModel):
    """A new account (seed 001's POST /api/v1/users)."""

    model_config = ConfigDict(extra="forbid")
    username: Username
    email: Email | None = None
    password: Password
    full_name: FullName = ""
    role: RoleName = "user"
    status: AccountStatus = "active"
    permissions: PermissionNames | None = None
    two_factor_enabled: StrictBool = Field(default=False, description="read-only: an account enrols 2FA itself "
                                                                      "(true is refused)")
    send_welcome_email: StrictBool = Field(default=False, description="tell the account's email address it "
                                                                      "exists (never the password)")


class AccountUpdate(BaseModel):
    """Only the fields given change (PUT and PATCH alike). A new role without ``permissions`` gets that role's
    defaults. ``two_factor_enabled: false`` switches an account's 2FA off (e.g. a lost phone); true is refused:
    the account enrols itself."""

    model_config = ConfigDict(extra="forbid")
    username: Username = Field(default=None, json_schema_extra=no_default)
    email: Email | None = Field(default=None, description="null: none")
    full_name: FullName = Field(default=None, json_schema_extra=no_default)
    role: RoleName = Field(default=None, json_schema_extra=no_default)
    status: AccountStatus = Field(default=None, json_schema_extra=no_default)
    permissions: PermissionNames | None = Field(default=None, description="null: the role's defaults")
    two_factor_enabled: StrictBool = Field(default=None, json_schema_extra=no_default)

    _not_null = field_validator("username", "full_name", "role", "status", "two_factor_enabled",
                                mode="before")(lambda cls, v: refuse_null(v))


class ResetPasswordBody(BaseModel):
    """An administrator sets an account's password (seed 001)."""

    model_config = ConfigDict(extra="forbid")
    new_password: Password
    force_change: StrictBool = Field(default=True, description="the account must choose a new password at its "
                                                               "next login")
    send_email: StrictBool = Field(default=False, description="tell the account its password was reset (never "
                                                              "the password itself)")


class AccountQuery(PageQuery):
    search: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL,
                               description="a substring of the username or email (any case)")
    role: RoleName | None = None
    status: AccountStatus | None = None
    sort: SortField = "username"
    order: Literal["asc", "desc"] = "asc"


class AccountOut(BaseModel):
    """Seed 001's user fields."""

    id: int
    username: str
    email: str | None
    full_name: str
    role: RoleName
    status: AccountStatus
    permissions: list[str] = Field(description='what the account may do now ("*": everything)')
    two_factor_enabled: bool
    last_login: str | None
    login_attempts: int = Field(description="failed logins since the last success")
    locked_until: str | None = Field(description="set while too many failed logins lock the account")
    must_change_password: bool
    created_at: str
    updated_at: str
