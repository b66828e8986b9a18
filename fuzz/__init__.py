"""Fuzz harnesses for every parser that takes bytes from outside the node.

    fuzz/harnesses.py   one harness per parser: bytes in; our own error types are the
                        expected outcome of bad input, anything else is a crash
    fuzz/seeds.py       the seed corpus of each harness (spec/vectors, ../shared/conformance,
                        valid values made with protocol/)
    fuzz/run_one.py     one harness under atheris (libFuzzer), coverage of protocol/ and node/
    scripts/fuzz        runs them all for a given time and reports executions and crashes

The harnesses import nothing from atheris: tests/test_fuzz_regressions.py replays every
crash ever found, and every seed, through the same functions without it.
"""
