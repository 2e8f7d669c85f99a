"""Groups: /lists/{id}/interest-categories and their interests (ids members carry in `interests`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import render
from .config import INTEREST_CATEGORY_TYPES, InterestCategorySpec, derived_id
from .exchange import ApiRequest, ApiResponse
from .model import Audience, InterestCategory
from .params import int_param, object_body
from .problems import ApiError, invalid
from .store import Store

if TYPE_CHECKING:
    from .api import Api


def _text(body: dict[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise invalid(key, "This value should not be blank.")
    return value.strip()


class InterestApi:
    """Handlers of the interest-category routes; they share the Api's helpers."""

    def __init__(self, api: Api) -> None:
        self.api = api

    @staticmethod
    def _category(store: Store, audience: Audience, category_id: str) -> InterestCategory:
        found = next((c for c in store.interest_categories(audience.list_no) if c.id == category_id), None)
        if found is None:
            raise ApiError("ResourceNotFound")
        return found

    @staticmethod
    def _page(req: ApiRequest) -> slice:
        count = int_param(req.query, "count", 10, 1000) or 0
        offset = int_param(req.query, "offset", 0) or 0
        return slice(offset, offset + count)

    def list_categories(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        categories = store.interest_categories(audience.list_no)
        href = f"{req.base_url}/3.0/lists/{list_id}/interest-categories"
        return ApiResponse(
            200,
            {
                "list_id": list_id,
                "categories": [
                    render.interest_category(c, list_id, req.base_url) for c in categories[self._page(req)]
                ],
                "total_items": len(categories),
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def get_category(self, store: Store, req: ApiRequest, list_id: str, category_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        category = self._category(store, audience, category_id)
        return ApiResponse(200, render.interest_category(category, list_id, req.base_url))

    def create_category(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        body = object_body(req.body)
        title = _text(body, "title")
        kind = body.get("type")
        if kind not in INTEREST_CATEGORY_TYPES:
            raise invalid("type", f"Value must be one of: {', '.join(INTEREST_CATEGORY_TYPES)}")
        with store.transaction():
            if any(c.title == title for c in store.interest_categories(audience.list_no)):
                raise invalid("title", f'An interest category titled "{title}" already exists.')
            spec = InterestCategorySpec(derived_id(list_id, title), title, str(kind))
            created = store.add_interest_category(audience.list_no, spec)
        return ApiResponse(200, render.interest_category(created, list_id, req.base_url))

    def list_interests(self, store: Store, req: ApiRequest, list_id: str, category_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        self._category(store, audience, category_id)
        interests = store.interests(audience.list_no, category_id)
        href = f"{req.base_url}/3.0/lists/{list_id}/interest-categories/{category_id}/interests"
        return ApiResponse(
            200,
            {
                "interests": [
                    render.interest(
                        i, list_id, store.interest_subscriber_count(audience.list_no, i.id), req.base_url
                    )
                    for i in interests[self._page(req)]
                ],
                "list_id": list_id,
                "category_id": category_id,
                "total_items": len(interests),
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def get_interest(
        self, store: Store, req: ApiRequest, list_id: str, category_id: str, interest_id: str
    ) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        self._category(store, audience, category_id)
        found = next((i for i in store.interests(audience.list_no, category_id) if i.id == interest_id), None)
        if found is None:
            raise ApiError("ResourceNotFound")
        count = store.interest_subscriber_count(audience.list_no, found.id)
        return ApiResponse(200, render.interest(found, list_id, count, req.base_url))

    def create_interest(self, store: Store, req: ApiRequest, list_id: str, category_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        body = object_body(req.body)
        name = _text(body, "name")
        with store.transaction():
            category = self._category(store, audience, category_id)
            if any(i.name == name for i in store.interests(audience.list_no, category_id)):
                raise invalid("name", f'An interest named "{name}" already exists in this category.')
            created = store.add_interest(
                audience.list_no, category_id, derived_id(list_id, category.title, name), name
            )
        return ApiResponse(200, render.interest(created, list_id, 0, req.base_url))
