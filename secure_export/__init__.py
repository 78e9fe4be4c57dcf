"""The ``secure-export`` console script: one thin dispatcher over both halves of the product."""
