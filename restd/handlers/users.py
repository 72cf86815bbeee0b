"""Profile, public profile, search and block endpoints."""

from __future__ import annotations

from domain import blocks, users
from domain.models import MeUser, ProfilePatch, PublicUser, SearchQuery, UserPage
from restd.handlers.base import ApiHandler
from restd.openapi import Operation

TAG = "users"


class ProfileHandler(ApiHandler):
    operations = {
        "get": Operation("My profile", TAG, MeUser, errors=(404,)),
        "patch": Operation(
            "Edit my profile", TAG, MeUser, body=ProfilePatch, errors=(403, 404, 409)
        ),
    }

    async def get(self) -> None:
        me = await self.require_user()
        self.write_model(users.me_view(await users.require_me(self.ctx, me)))

    async def patch(self) -> None:
        me = await self.require_user()
        patch = self.parse_body(ProfilePatch)
        await users.require_me(self.ctx, me)
        self.write_model(await users.update_profile(self.ctx, me, patch))


class UserHandler(ApiHandler):
    operations = {"get": Operation("A user's public profile", TAG, PublicUser)}

    async def get(self, user_id: str) -> None:
        me = await self.require_user()
        self.write_model(await users.get_public(self.ctx, me, user_id))


class SearchHandler(ApiHandler):
    operations = {
        "get": Operation(
            "Search profiles by text, skill and location", TAG, UserPage, query=SearchQuery
        )
    }

    async def get(self) -> None:
        me = await self.require_user()
        query = self.parse_query(SearchQuery)
        self.write_model(await users.search(self.ctx, me, query))


class BlockHandler(ApiHandler):
    operations = {
        "post": Operation(
            "Block a user (ends any connection)", TAG, None, status=204, errors=(403, 409)
        ),
        "delete": Operation("Unblock a user", TAG, None, status=204, errors=(403,)),
    }

    async def post(self, user_id: str) -> None:
        me = await self.require_user()
        await blocks.block(self.ctx, me, user_id)
        self.no_content()

    async def delete(self, user_id: str) -> None:
        me = await self.require_user()
        await blocks.unblock(self.ctx, me, user_id)
        self.no_content()
