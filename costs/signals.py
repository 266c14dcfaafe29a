"""What the ledger tells the apps above it. Each is sent with `rows`: the stored events of a
batch (dicts of the ledger's columns), never the duplicates."""

from django.dispatch import Signal

# Sent inside the batch's transaction: a receiver's writes (strategy memory) move with the
# ledger or not at all. A receiver returns the names of the data versions (core.models.DataVersion)
# its writes moved, or None: the ingest writes them, with the spend version, in one statement at
# the end of the transaction, instead of a statement (and a commit) each.
usage_stored = Signal()

# Sent once the batch's own transaction is closed, with `versions` too: the new value of each
# version the batch moved. That is its commit, unless the caller holds an outer transaction
# (health checks store ping costs inside theirs): receivers that read the new spend from the
# database see it either way, since they run on the same connection.
usage_ingested = Signal()
