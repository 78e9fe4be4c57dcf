"""``make bench``: receiver throughput and latency against a bare-server baseline, and the
Pulumi program's cost against the number of alert rules.

Run ``python -m bench`` (or ``make bench``); ``python -m bench --quick`` is a short smoke run.
"""
