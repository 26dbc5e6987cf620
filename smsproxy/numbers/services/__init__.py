"""Changes to the number pool, one module per concern.

`provisioning` rents numbers (jobs: create, run, the dry-run search), `provisioning_start`
starts a job here or hands it to a worker, `rental` is a rented number's life (configure,
reserve, release, rent one on the fly), `sync` makes the pool match the provider account.
"""
