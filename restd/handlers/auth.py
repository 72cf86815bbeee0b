"""Auth endpoints: signup, login, refresh, logout, logout-all, me."""

from __future__ import annotations

from domain import accounts, users
from domain.accounts import Session
from domain.models import AuthResult, LoginBody, MeUser, ProfilePatch, SignupBody
from restd.handlers.base import ApiHandler
from restd.handlers.users import ProfileHandler
from restd.openapi import Link, Operation

TAG = "auth"
REFRESH_COOKIE_PATH = "/api/auth"
# The device cookie vouches only for logins; no other route ever reads it.
DEVICE_COOKIE_PATH = "/api/auth/login"

# What a new session leads to: the user's own public profile, and a request to them.
SESSION_LINKS = (
    Link(
        "GetSignedInUser",
        "get",
        "/api/users/{user_id}",
        {"user_id": "$response.body#/user/id"},
        description="The signed-in user's public profile",
    ),
    Link(
        "AskToConnect",
        "post",
        "/api/connection-requests",
        body={"toUserId": "$response.body#/user/id"},
        description="Ask this user to connect (from another account)",
    ),
)


class SessionHandler(ApiHandler):
    """Sets and clears the two HttpOnly session cookies (and the device cookie)."""

    def max_body_bytes(self) -> int:
        # Unauthenticated routes: a few KiB are all a name, an email and a password need.
        return self.ctx.settings.auth_body_max_bytes

    def set_session_cookies(self, session: Session) -> None:
        s = self.ctx.settings
        if session.device_token is not None:
            # Kept across logouts on purpose: it names a device, not a session.
            self._set_http_only(
                s.device_cookie_name,
                session.device_token,
                DEVICE_COOKIE_PATH,
                s.device_cookie_ttl_s,
            )
        self._set_http_only(s.access_cookie_name, session.access_token, "/", s.jwt_access_ttl_s)
        # Sent only to the auth endpoints, which are the only ones that read it.
        self._set_http_only(
            s.refresh_cookie_name, session.refresh_token, REFRESH_COOKIE_PATH, s.jwt_refresh_ttl_s
        )

    def _set_http_only(self, name: str, value: str, path: str, max_age_s: int) -> None:
        s = self.ctx.settings
        self.set_cookie(
            name,
            value,
            path=path,
            httponly=True,
            secure=s.cookie_secure,
            samesite=s.cookie_samesite.capitalize(),
            max_age=max_age_s,
        )

    def clear_session_cookies(self) -> None:
        s = self.ctx.settings
        samesite = s.cookie_samesite.capitalize()
        self.clear_cookie(s.access_cookie_name, path="/", secure=s.cookie_secure, samesite=samesite)
        self.clear_cookie(
            s.refresh_cookie_name,
            path=REFRESH_COOKIE_PATH,
            secure=s.cookie_secure,
            samesite=samesite,
        )

    def write_session(self, session: Session, status: int) -> None:
        self.set_session_cookies(session)
        result = AuthResult(user=users.me_view(session.user), accessToken=session.access_token)
        self.write_model(result, status)


class SignupHandler(SessionHandler):
    reads_session_cookie = False
    operations = {
        "post": Operation(
            "Create an account and sign in",
            TAG,
            AuthResult,
            status=201,
            body=SignupBody,
            auth=False,
            errors=(403, 409, 429, 503),
            links=SESSION_LINKS,
        )
    }

    async def post(self) -> None:
        body = self.parse_body(SignupBody)
        session = await accounts.signup(self.ctx, body, self.client_ip)
        self.write_session(session, 201)


class LoginHandler(SessionHandler):
    reads_session_cookie = False
    operations = {
        "post": Operation(
            "Sign in with email and password",
            TAG,
            AuthResult,
            body=LoginBody,
            auth=False,
            errors=(401, 403, 429, 503),
            links=SESSION_LINKS,
        )
    }

    async def post(self) -> None:
        body = self.parse_body(LoginBody)
        device = self.get_cookie(self.ctx.settings.device_cookie_name)
        session = await accounts.login(self.ctx, body, self.client_ip, device)
        self.write_session(session, 200)


class RefreshHandler(SessionHandler):
    operations = {
        "post": Operation(
            "Rotate the refresh cookie and get a new access token",
            TAG,
            AuthResult,
            auth=False,
            errors=(401, 403),
            security=("refreshCookie",),
        )
    }

    async def post(self) -> None:
        token = self.get_cookie(self.ctx.settings.refresh_cookie_name)
        session = await accounts.refresh(self.ctx, token)
        self.write_session(session, 200)


class LogoutHandler(SessionHandler):
    operations = {
        "post": Operation("Sign out this browser", TAG, None, status=204, auth=False, errors=(403,))
    }

    async def post(self) -> None:
        await accounts.logout(self.ctx, self.get_cookie(self.ctx.settings.refresh_cookie_name))
        self.clear_session_cookies()
        self.no_content()


class LogoutAllHandler(SessionHandler):
    operations = {
        "post": Operation(
            "Sign out everywhere and close every chat socket",
            TAG,
            None,
            status=204,
            errors=(403,),
        )
    }

    async def post(self) -> None:
        me = await self.require_user()
        await accounts.logout_all(self.ctx, me)
        self.clear_session_cookies()
        self.no_content()


class MeHandler(ProfileHandler):
    """``/api/auth/me`` and ``/api/me``: the signed-in user, email and prefs included.

    The same reads and edits as ``/api/users/me`` (ProfileHandler), documented here."""

    operations = {
        "get": Operation("The signed-in user", TAG, MeUser, errors=(404,)),
        # The same edit as PATCH /api/users/me; the email prefs live in ``prefs``
        # (emailMessages, emailConnections, emailPayments: false turns a kind off).
        "patch": Operation(
            "Edit the signed-in user's profile and prefs",
            TAG,
            MeUser,
            body=ProfilePatch,
            errors=(403, 404, 409),
        ),
    }
