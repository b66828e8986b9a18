"""Helpline cases: what the person who asks for help holds, and what the helpline keeps.

- `numbers.py`     case numbers (75 random bits + a check symbol, Crockford base32,
                   read aloud as XXXX-XXXX-XXXX-XXXX) and PINs (8 digits)
- `hashes.py`      the keyed hash that stands for a case number in the database and
                   the scrypt hash of a PIN (never the number or the PIN themselves)
- `eligibility.py` the four questions asked before a case, and where else to find help
- `fingerprints.py` checking the fingerprints of a new case, turning them into
                   submission entries
- `limits.py`      failed-PIN limiting: per client address (in memory only) and per case
                   number (in the case's row; in memory for numbers that name no case)
- `proxies.py`     the client address the limiter counts, behind trusted reverse proxies
- `service.py`     the case service: create, status, withdraw, and the repair of cases
                   interrupted by a crash

spec/parts/cases.md is the normative description; node/store/cases.py holds the tables.
"""
