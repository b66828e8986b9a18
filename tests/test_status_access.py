"""GET /status says whom a node follows: registered readers only on the public site,
the operator on the admin site, everyone when the node is public_read."""

from __future__ import annotations

from node.cli import main as cli_main
from node.datadir import DataDir
from node.readaccess import RequestSigner
from node.web.app import create_admin_app, create_app


def make_node(root, *extra) -> DataDir:
    assert cli_main(["init", "--dir", str(root), "--origin", "platform.test/log", "--role", "platform", *extra]) == 0
    return DataDir(root)


async def test_status_is_for_readers_and_the_operator(aiohttp_client, tmp_path):
    node = make_node(tmp_path / "p")
    app = create_app(node)
    public = await aiohttp_client(app)
    response = await public.get("/status")
    assert response.status == 401
    assert "registered readers" in await response.text()

    # a registered reader signing its request sees it
    reader_key = make_node(tmp_path / "reader").load_request_signer()
    assert cli_main(["readers", "add", "--dir", str(node.root), reader_key.verifier_key(), "--name", "r"]) == 0
    signer = RequestSigner.from_seed(reader_key.name, reader_key.seed)
    url = str(public.make_url("/status"))
    response = await public.get("/status", headers=signer.sign_headers("GET", url))
    assert response.status == 200 and "logs" in await response.json()

    admin = await aiohttp_client(create_admin_app(app))
    response = await admin.get("/status")
    assert response.status == 200 and "logs" in await response.json()


async def test_public_read_node_shows_status_to_anyone(aiohttp_client, tmp_path):
    public = await aiohttp_client(create_app(make_node(tmp_path / "p", "--public-read")))
    response = await public.get("/status")
    assert response.status == 200 and "logs" in await response.json()
