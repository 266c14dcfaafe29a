"""What the ledger tells the apps above it. Each is sent with `rows`: the stored events of a
batch (dicts of the ledger's columns), never the duplicates."""

from django.dispatch import Signal

# Sent inside the batch's transaction: a receiver's writes (strategy memory) move with the
# ledger or not at all.
usage_stored = Signal()

# Sent once the batch's own transaction is closed. That is its commit, unless the caller holds
# an outer transaction (health checks store ping costs inside theirs): receivers that read the
# new spend from the database see it either way, since they run on the same connection.
usage_ingested = Signal()
