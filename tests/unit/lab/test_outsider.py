"""lab/outsider.py: the routes the outsider tries are the ones the running server lists (#14)."""
from __future__ import annotations

import pytest

from lab.outsider import FASTAPI_PAGES, routes_from_openapi


def test_every_listed_route_and_method_with_parameters_filled():
    doc = {"paths": {
        "/v1/completions": {"post": {}},
        "/v1/models": {"get": {}},
        "/v1/responses/{response_id}": {"get": {}, "delete": {}, "parameters": []},
        "/docs": {"get": {}},
    }}
    routes = routes_from_openapi(doc)
    assert ["POST", "/v1/completions"] in routes and ["GET", "/v1/models"] in routes
    assert ["GET", "/v1/responses/x"] in routes and ["DELETE", "/v1/responses/x"] in routes
    assert not any(r[0] == "PARAMETERS" for r in routes)
    # FastAPI's own pages are tried too (not in the document), /docs once only.
    assert [r for r in routes if r[1] == "/docs"] == [["GET", "/docs"]]
    for page in FASTAPI_PAGES:
        assert ["GET", page] in routes


@pytest.mark.parametrize("doc", [{}, {"paths": {}}, {"paths": []}, []])
def test_a_document_without_paths_is_an_error(doc):
    with pytest.raises(ValueError, match="no paths"):
        routes_from_openapi(doc)
