"""Changes to the number pool, one module per concern.

`provisioning` rents numbers (jobs), `rental` is a rented number's life (configure, reserve,
release, rent one on the fly), `sync` makes the pool match the provider account.
"""
