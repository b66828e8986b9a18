"""spec/openapi.yaml documents every HTTP route of the node, for every role, and
nothing that does not exist. (Read without a YAML library: paths are the two-space
keys under `paths:`, methods the four-space keys below them.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.runtime import Node
from node.web.app import create_admin_app, create_app

from publish_support import make_datadir

SPEC = Path(__file__).resolve().parents[1] / "spec" / "openapi.yaml"


def spec_routes() -> set[tuple[str, str]]:
    text = SPEC.read_text()
    assert text.startswith("openapi: 3.1.0\n")
    body = text.split("\npaths:\n", 1)[1].split("\ncomponents:\n", 1)[0]
    routes, path = set(), None
    for line in body.splitlines():
        if m := re.fullmatch(r"  (/\S*):", line):
            path = re.sub(r"\{[^}]+\}", "{}", m.group(1))
        elif (m := re.fullmatch(r"    (get|post|put|delete|patch):", line)) and path:
            routes.add((m.group(1).upper(), path))
    return routes


def app_routes(app) -> set[tuple[str, str]]:
    from node.web.static_routes import page_files

    page = set(page_files()) - {"/"}
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        canonical = re.sub(r"\{[^}]+\}", "{}", route.resource.canonical)
        if canonical in page:
            canonical = "/{}"  # the files of the web page: one documented path, /{file}
        out.add((route.method, canonical))
    return out


@pytest.fixture(scope="module")
def node_routes(tmp_path_factory) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    for role in ("helpline", "platform", "witness"):
        node = Node(make_datadir(tmp_path_factory.mktemp(role), name=role, role=role))  # built, never started
        routes |= app_routes(create_app(node)) | app_routes(create_admin_app(node))
    return routes


def test_every_route_is_documented(node_routes):
    missing = node_routes - spec_routes()
    assert not missing, f"routes missing from spec/openapi.yaml: {sorted(missing)}"


def test_nothing_documented_that_does_not_exist(node_routes):
    extra = spec_routes() - node_routes
    assert not extra, f"spec/openapi.yaml documents routes the node does not have: {sorted(extra)}"


def test_no_code_in_any_url():
    # Case numbers and PINs travel only in bodies: no path or query parameter names them.
    text = SPEC.read_text()
    for name in ("case_number", "pin"):
        assert not re.search(rf"name: {name}\b", text)


def test_spec_is_valid_openapi_and_every_description_is_whole():
    # A YAML slip (an unquoted ": " or ", " in a flow mapping) still parses, but into
    # something else: validate the document and look for the stray null keys it leaves.
    validator = pytest.importorskip("openapi_spec_validator")
    import yaml

    document = yaml.safe_load(SPEC.read_text())
    validator.validate(document)

    def nulls(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None:
                    yield f"{path}/{key}"
                yield from nulls(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from nulls(value, f"{path}/{i}")

    assert not list(nulls(document))
