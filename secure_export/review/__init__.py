"""Stack review without a cloud: ``secure-export diff`` and the policy rules shared by ``plan --policy`` and policy/.

Nothing here imports Pulumi at import time: the policy pack (policy/) imports the rules in a virtual
environment of its own, and the diff plans each side only when it runs.
"""
