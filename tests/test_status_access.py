"""GET /status says whom a node follows: registered readers only on the public site,
the operator on the admin site, everyone when the node is public_read."""

from __future__ import annotations

from node.cli import main as cli_main
from node.readaccess import RequestSigner

from publish_support import Site, make_datadir


def make_node(tmp_path, name: str, public_read: bool = False):
    return make_datadir(tmp_path, name=name, origin="platform.test/log", role="platform", public_read=public_read)


async def test_status_is_for_readers_and_the_operator(start_node, session, tmp_path):
    node = make_node(tmp_path, "p")
    running = await start_node(node)
    public = Site(session, running)
    response = await public.get("/status")
    assert response.status == 401
    assert "registered readers" in await response.text()

    # a registered reader signing its request sees it
    reader_key = make_node(tmp_path, "reader").load_request_signer()
    assert cli_main(["readers", "add", "--dir", str(node.root), reader_key.verifier_key(), "--name", "r"]) == 0
    signer = RequestSigner.from_seed(reader_key.name, reader_key.seed)
    url = str(public.make_url("/status"))
    response = await public.get("/status", headers=signer.sign_headers("GET", url))
    assert response.status == 200 and "logs" in await response.json()

    admin = Site(session, running, admin=True)
    response = await admin.get("/status")
    assert response.status == 200 and "logs" in await response.json()


async def test_public_read_node_shows_status_to_anyone(start_node, session, tmp_path):
    public = Site(session, await start_node(make_node(tmp_path, "p", public_read=True)))
    response = await public.get("/status")
    assert response.status == 200 and "logs" in await response.json()
