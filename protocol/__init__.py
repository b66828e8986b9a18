"""Pure protocol core of ncii-node: bytes in, values out.

Nothing in this package does I/O: no sockets, files, clocks or globals. It imports
only the standard library, `cryptography`, and (for signals) `numpy`/`pdqhash`.
"""
