"""Authentication of secure-webhook calls: Entra ID access tokens and the subscription allow-list.

``tokens`` verifies the bearer token, ``jwks`` holds the tenant's keys, ``subscriptions`` limits
which subscriptions' alerts are accepted, ``errors`` are the answers (docs/authentication.md).
"""
