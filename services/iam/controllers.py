"""HTTP endpoints of the IAM service: parse, call IamService, map errors to status codes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_409_CONFLICT

from contracts.http import ErrorBody, GuestIn, LoginIn, RefreshIn, TokenPair, UserIn, UserOut
from services.common.web import strict_body
from services.iam.service import (
    IamService,
    InvalidCredentials,
    InvalidNickname,
    InvalidRefreshToken,
    UsernameTaken,
    get_iam_service,
)

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="quizrt"'}


def _errors(specific: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """OpenAPI entries for error answers (all share ErrorBody); nginx adds 413 and 429."""
    common = {
        422: "A field is invalid, missing or unknown; the detail names it",
        413: "Body too large (nginx)",
        429: "Rate limited per client address (nginx); see Retry-After",
    }
    return {
        code: ResponseSpec(ErrorBody, description=text, generate_examples=False)
        for code, text in {**common, **(specific or {})}.items()
    }


async def trim_nickname(request: Request) -> None:
    """before_request: trim ``nickname`` before the body is validated against its Struct.

    Litestar decodes the JSON once and caches it; validation into the Struct runs
    after this hook, so the 1-24 character rule applies to the trimmed value.
    """
    try:
        body = await request.json()
    except Exception:  # malformed or too deep: strict_body answers 400
        body = None
    if isinstance(body, dict) and isinstance(body.get("nickname"), str):
        body["nickname"] = body["nickname"].strip()
    await strict_body(request)  # a handler's before_request replaces the app's


def _bad_nickname(e: InvalidNickname) -> ValidationException:
    return ValidationException(
        detail=f"{e} (field `nickname`)", extra=[{"key": "nickname", "message": str(e)}]
    )


class IamController(Controller):
    """Guests, hosts, login, refresh and the JWKS under ``/api/iam``."""

    path = ""
    tags = ["identity"]
    dependencies = {"iam": Provide(get_iam_service, sync_to_thread=False)}

    @post(
        "/guests",
        status_code=HTTP_201_CREATED,
        before_request=trim_nickname,
        summary="Create a guest player (nickname only) and return its tokens",
        responses=_errors(),
    )
    async def create_guest(self, data: GuestIn, iam: IamService) -> TokenPair:
        try:
            return await iam.create_guest(data.nickname)
        except InvalidNickname as e:
            raise _bad_nickname(e) from e

    @post(
        "/users",
        status_code=HTTP_201_CREATED,
        before_request=trim_nickname,
        summary="Register a host (username and password)",
        responses=_errors({409: "The username is taken"}),
    )
    async def register(self, data: UserIn, iam: IamService) -> UserOut:
        try:
            return await iam.register(data.username, data.password, data.nickname)
        except InvalidNickname as e:
            raise _bad_nickname(e) from e
        except UsernameTaken as e:
            raise ClientException("Username is taken", status_code=HTTP_409_CONFLICT) from e

    @post(
        "/token",
        status_code=HTTP_200_OK,
        summary="Log in a host: a token pair",
        responses=_errors({401: "Wrong username or password"}),
    )
    async def login(self, data: LoginIn, iam: IamService) -> TokenPair:
        try:
            return await iam.login(data.username, data.password)
        except InvalidCredentials as e:
            raise NotAuthorizedException(
                "Wrong username or password", headers=_BEARER_CHALLENGE
            ) from e

    @post(
        "/token/refresh",
        status_code=HTTP_200_OK,
        summary="Rotate a refresh token: a new pair; the old refresh token stops working",
        responses=_errors(
            {
                401: "Unknown, expired, revoked or reused refresh token "
                "(a reuse revokes its whole family)"
            }
        ),
    )
    async def refresh(self, data: RefreshIn, iam: IamService) -> TokenPair:
        try:
            return await iam.refresh(data.refresh_token)
        except InvalidRefreshToken as e:
            raise NotAuthorizedException(str(e), headers=_BEARER_CHALLENGE) from e

    @get("/jwks", summary="The public keys (JWKS) that verify access tokens", sync_to_thread=False)
    def jwks(self, iam: IamService) -> Response[dict[str, Any]]:
        # Short public caching: verifiers refetch anyway when they meet an unknown kid.
        return Response(iam.jwks(), headers={"Cache-Control": "public, max-age=60"})
