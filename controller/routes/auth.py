"""Signing in (seed 001/002's /api/v1/auth): login with 2FA, refresh, logout, me, password, 2FA enrolment,
self-registration, email verification and password resets. Business rules: ``SignInService``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from controller.access import Access, public, signed_in
from controller.api import Ctl, errors
from controller.auth import Principal
from controller.edge.auth import source_of
from controller.edge.request_id import request_id
from controller.errors import TokenInvalid, Unauthorized
from controller.schemas.auth import (AcceptedOut, ChangePasswordBody, CodeBody, DisableTwoFactorBody, EnabledOut,
                                     LoginBody, LogoutBody, MeOut, RecoveryCodesOut, RefreshBody, RegisterBody,
                                     RegisteredOut, ResetPasswordBody, ResetRequestBody, TokensOut,
                                     TwoFactorChallengeOut, TwoFactorSetupOut, TwoFactorSetupRequiredOut,
                                     VerifiedOut, VerifyEmailBody, VerifyTwoFactorBody)
from controller.services.sign_ins import Caller
from controller.tokens import ACCESS, SETUP

router = APIRouter(tags=["auth"])

Anyone = Annotated[Access, public()]
SignedIn = Annotated[Access, signed_in()]
_NO_CONTENT: dict[int | str, dict[str, Any]] = {204: {"description": "done; no body"}}


def caller(request: Request) -> Caller:
    """Where the request came from, for the session row and the audit log."""
    return Caller(source=source_of(request.scope), user_agent=request.headers.get("user-agent", ""),
                  request_id=request_id(request.scope))


def bearer(request: Request) -> str | None:
    """The Authorization: Bearer token, read here: on these public routes it is the route's own token (an mfa
    challenge, a refresh token), which the edge leaves alone."""
    value = request.headers.get("authorization", "")
    return (value[7:].strip() or None) if value.lower().startswith("bearer ") else None


def principal_of(access: Access) -> Principal:
    """The caller of a signed-in route."""
    assert access.principal is not None  # signed_in() lets none through without one
    return access.principal


# -- sessions -------------------------------------------------------------------------------------------------

@router.post("/api/v1/auth/login", response_model=TokensOut | TwoFactorChallengeOut | TwoFactorSetupRequiredOut,
             responses=errors(401, 403, 429), summary="Sign in")
async def login(body: LoginBody, request: Request, ctl: Ctl, access: Anyone) -> dict[str, Any]:
    """Username and password -> an access token (a JWT for ``Authorization: Bearer``) and a single-use refresh
    token. An account with 2FA gets ``two_factor_required`` and an ``mfa_token`` for POST /verify-2fa instead;
    one whose role must enrol 2FA first gets ``two_factor_setup_required`` and a ``setup_token``.

    Wrong passwords answer 401 INVALID_CREDENTIALS, the same for a name with no account; auth.max_login_attempts
    of them in a row lock the name: 429 with ``retry_after`` until auth.lockout_seconds pass."""
    return await ctl.sign_ins.login(body.username, body.password, body.remember_me, caller(request))


@router.post("/api/v1/auth/verify-2fa", response_model=TokensOut, responses=errors(401, 429),
             summary="Complete a sign-in with a second factor")
async def verify_two_factor(body: VerifyTwoFactorBody, request: Request, ctl: Ctl, access: Anyone) -> dict[str, Any]:
    """The login's ``mfa_token`` (``Authorization: Bearer``, or ``mfa_token`` in the body) and a TOTP code
    (``method: totp``, the current 30-second window or the one either side, each code once) or a recovery code
    (``method: recovery``, each once) -> the login's tokens. Wrong codes count towards the lockout."""
    token = bearer(request) or body.mfa_token
    if not token:
        raise Unauthorized("the login's mfa_token is required (Authorization: Bearer)")
    return await ctl.sign_ins.verify_second_factor(token, body.code, body.method, caller(request))


@router.post("/api/v1/auth/refresh", response_model=TokensOut, responses=errors(401), summary="Refresh tokens")
async def refresh(request: Request, ctl: Ctl, access: Anyone, body: RefreshBody | None = None) -> dict[str, Any]:
    """A refresh token (``refresh_token`` in the body, or ``Authorization: Bearer``) -> a new access token and a
    new refresh token; the one sent is spent. Sending a spent one again revokes the whole session (all its
    tokens: someone else has a copy): 401 TOKEN_INVALID."""
    token = (body.refresh_token if body else None) or bearer(request)
    if not token:
        raise TokenInvalid("a refresh token is required (refresh_token, or Authorization: Bearer)")
    return await ctl.sign_ins.refresh(token, caller(request))


@router.post("/api/v1/auth/logout", status_code=204, response_class=Response, responses={**_NO_CONTENT, **errors()},
             summary="Sign out")
async def logout(request: Request, ctl: Ctl, access: SignedIn, body: LogoutBody | None = None) -> Response:
    """End this sign-in: its refresh token and every access token it issued stop working now. ``{"all": true}``
    ends every sign-in of the account."""
    await ctl.sign_ins.logout(principal_of(access), bool(body and body.all), caller(request))
    return Response(status_code=204)


@router.get("/api/v1/auth/me", response_model=MeOut, summary="The signed-in account")
async def me(ctl: Ctl, access: SignedIn) -> dict[str, Any]:
    """The account the access token (or API key) belongs to."""
    return await ctl.sign_ins.me(principal_of(access))


@router.put("/api/v1/auth/password", status_code=204, response_class=Response, responses={**_NO_CONTENT, **errors()},
            summary="Change the password")
async def change_password(body: ChangePasswordBody, request: Request, ctl: Ctl, access: SignedIn) -> Response:
    """A new password (the policy's 422 names ``new_password``; a wrong ``current_password`` is a 422 naming it
    and counts towards the lockout). Every other sign-in of the account ends."""
    await ctl.sign_ins.change_password(principal_of(access), body.current_password, body.new_password,
                                       caller(request))
    return Response(status_code=204)


# -- 2FA --------------------------------------------------------------------------------------------------------

@router.post("/api/v1/auth/2fa/setup", response_model=TwoFactorSetupOut, responses=errors(409),
             summary="Start 2FA enrolment")
async def two_factor_setup(ctl: Ctl, access: SignedIn) -> dict[str, Any]:
    """A new TOTP secret, its ``otpauth://`` URI and a QR code of it for an authenticator app. 2FA is not on
    until POST /2fa/enable gets a code from it. Also takes the login's ``setup_token``."""
    return await ctl.sign_ins.setup_two_factor(principal_of(access))


@router.post("/api/v1/auth/2fa/enable", response_model=EnabledOut, responses=errors(409),
             summary="Turn 2FA on")
async def two_factor_enable(body: CodeBody, request: Request, ctl: Ctl, access: SignedIn) -> dict[str, Any]:
    """A current code from the enrolled secret turns 2FA on: the answer holds ten recovery codes, shown only
    now. With the login's ``setup_token``, the answer also holds the sign-in's tokens."""
    setup = None
    token = bearer(request)
    if token and access.principal is not None and access.principal.session_id is not None:
        claims = ctl.signer.verify(token, (SETUP, ACCESS))
        setup = claims.session_id if claims.type == SETUP else None
    return await ctl.sign_ins.enable_two_factor(principal_of(access), body.code, setup, caller(request))


@router.post("/api/v1/auth/2fa/disable", status_code=204, response_class=Response,
             responses={**_NO_CONTENT, **errors(409)}, summary="Turn 2FA off")
async def two_factor_disable(body: DisableTwoFactorBody, request: Request, ctl: Ctl, access: SignedIn) -> Response:
    """The password and a current TOTP code (or a recovery code) turn 2FA off. Refused (403) for a role that
    must keep it (auth.require_two_factor_roles)."""
    await ctl.sign_ins.disable_two_factor(principal_of(access), body.password, body.code, caller(request))
    return Response(status_code=204)


@router.post("/api/v1/auth/2fa/recovery-codes", response_model=RecoveryCodesOut, responses=errors(409),
             summary="New recovery codes")
async def two_factor_recovery_codes(body: CodeBody, request: Request, ctl: Ctl, access: SignedIn) -> dict[str, Any]:
    """Ten new recovery codes for a current code; the old ones stop working."""
    return await ctl.sign_ins.regenerate_recovery_codes(principal_of(access), body.code, caller(request))


# -- self-registration and resets (seed 002) -------------------------------------------------------------------

@router.post("/api/v1/auth/register", status_code=202, response_model=RegisteredOut, responses=errors(403, 409, 503),
             summary="Register an account")
async def register(body: RegisterBody, request: Request, ctl: Ctl, access: Anyone) -> dict[str, Any]:
    """A ``user`` account, inactive until the code emailed to it is given to POST /verify. Off unless
    auth.self_registration is on (403). A taken username is a 409; a taken email gets the same answer as a
    free one (its owner is told by email instead), so the answer never says whether an address is registered."""
    return await ctl.sign_ins.register(body.username, body.email, body.password, body.full_name, caller(request))


@router.post("/api/v1/auth/verify", response_model=VerifiedOut, summary="Verify an email address")
async def verify_email(body: VerifyEmailBody, request: Request, ctl: Ctl, access: Anyone) -> dict[str, Any]:
    """The emailed code activates the registered account. A wrong, used or expired code is a 422 naming
    ``code``; five wrong tries spend it."""
    return await ctl.sign_ins.verify_email(body.email, body.code, caller(request))


@router.post("/api/v1/auth/reset-password/request", status_code=202, response_model=AcceptedOut,
             summary="Ask for a password reset code")
async def request_reset(body: ResetRequestBody, request: Request, ctl: Ctl, access: Anyone) -> dict[str, Any]:
    """Always 202: a code is emailed if an account has this address (the answer does not say)."""
    await ctl.sign_ins.request_reset(body.email, caller(request))
    return {"status": "accepted", "message": "if an account has this address, a reset code was sent to it"}


@router.post("/api/v1/auth/reset-password", status_code=204, response_class=Response, responses=_NO_CONTENT,
             summary="Reset a password with an emailed code")
async def reset_password(body: ResetPasswordBody, request: Request, ctl: Ctl, access: Anyone) -> Response:
    """The emailed code and a new password: the account is unlocked and every sign-in of it ends."""
    await ctl.sign_ins.reset_password(body.email, body.code, body.new_password, caller(request))
    return Response(status_code=204)
