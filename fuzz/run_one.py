"""One harness under atheris (libFuzzer): `python -m fuzz.run_one NAME [libFuzzer flags] CORPUS...`.

protocol/, node/, the harnesses and the libraries a harness names (`instrument`) are
instrumented for coverage. Each seed is run once inside the instrumenting block
first, so that the modules a parser imports lazily are instrumented too. Started by fuzz/campaign.py (scripts/fuzz), one process
per harness: libFuzzer ends the process at the end of a run or at the first crash.
"""

from __future__ import annotations

import logging
import sys

import atheris


def main() -> None:
    name, flags = sys.argv[1], sys.argv[2:]
    logging.disable(logging.CRITICAL)  # the node's warnings about bad input are expected here
    with atheris.instrument_imports(include=["protocol", "node", "fuzz"]):
        from fuzz.harnesses import HARNESSES
        from fuzz.seeds import seeds

        harness = HARNESSES[name]
    with atheris.instrument_imports(include=["protocol", "node", "fuzz", *harness.instrument]):
        for seed in seeds(name):
            harness.run(seed)
    atheris.Setup([sys.argv[0], *flags], harness.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
