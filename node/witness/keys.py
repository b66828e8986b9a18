"""The witness's cosigning key (C2SP tlog-cosignature/v1, Ed25519), kept in DIR/keys/witness.key.

The key is separate from the log key and the request key: a witness vouches for other
logs, and a leaked witness key must not let anyone sign this node's own log. It is
named after the node's origin unless a name is given when it is first created; the
file is created with mode 0600 and never overwritten.
"""

from __future__ import annotations

from pathlib import Path

from node.datadir import DataDirError
from protocol.cosignature import CosignatureSigner
from protocol.errors import KeyFormatError

WITNESS_KEY_FILE = "keys/witness.key"


def witness_key_path(datadir) -> Path:
    return datadir.root / WITNESS_KEY_FILE


def has_witness_key(datadir) -> bool:
    return witness_key_path(datadir).exists()


def load_witness_signer(datadir, *, create: bool = False, name: str | None = None) -> CosignatureSigner:
    """The witness key of this data directory; with create=True a new one is made if
    there is none (named `name`, default the node's origin)."""
    path = witness_key_path(datadir)
    if not path.exists():
        if not create:
            raise DataDirError(f"no witness key at {path}; create it with `ncii-node witness key --dir DIR`")
        signer = CosignatureSigner.generate(name or datadir.config.node.origin)
        datadir.write_secret(path, signer.to_key_file())
        return signer
    try:
        return CosignatureSigner.from_key_file(datadir.read_secret(path))
    except KeyFormatError as exc:
        raise DataDirError(f"{path}: {exc}") from None
