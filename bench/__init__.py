"""``make bench``: the receiver, the Pulumi program's cost, the drain into ServiceNow and the inbox
stores, each measured against its own baseline in the same run.

Run ``python -m bench`` (or ``make bench``); methodology and findings are in docs/benchmarks.md.
"""
