"""HTTP endpoints of the IAM service: parse, call IamService.

IamService raises the IAM's errors (``services.iam.service``), which carry their
status; the app factory's one handler answers them.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from contracts.http import ErrorBody, GuestIn, LoginIn, RefreshIn, TokenPair, UserIn, UserOut
from services.common.web import strict_body
from services.iam.service import IamService, get_iam_service

provide_iam = Provide(get_iam_service, sync_to_thread=False)
"""The ``iam`` dependency: the process's IamService (the app factory provides it)."""


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


class IamController(Controller):
    """Guests, hosts, login, refresh and the JWKS under ``/api/iam``."""

    path = ""
    tags = ["identity"]

    @post(
        "/guests",
        status_code=HTTP_201_CREATED,
        before_request=trim_nickname,
        summary="Create a guest player (nickname only) and return its tokens",
        responses=_errors(),
    )
    async def create_guest(self, data: GuestIn, iam: IamService) -> TokenPair:
        return await iam.create_guest(data.nickname)

    @post(
        "/users",
        status_code=HTTP_201_CREATED,
        before_request=trim_nickname,
        summary="Register a host (username and password)",
        responses=_errors({409: "The username is taken"}),
    )
    async def register(self, data: UserIn, iam: IamService) -> UserOut:
        return await iam.register(data.username, data.password, data.nickname)

    @post(
        "/token",
        status_code=HTTP_200_OK,
        summary="Log in a host: a token pair",
        responses=_errors({401: "Wrong username or password"}),
    )
    async def login(self, data: LoginIn, iam: IamService) -> TokenPair:
        return await iam.login(data.username, data.password)

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
        return await iam.refresh(data.refresh_token)

    @get("/jwks", summary="The public keys (JWKS) that verify access tokens", sync_to_thread=False)
    def jwks(self, iam: IamService) -> Response[dict[str, Any]]:
        # Short public caching: verifiers refetch anyway when they meet an unknown kid.
        return Response(iam.jwks(), headers={"Cache-Control": "public, max-age=60"})
