"""What the catalog asks of, and tells, the apps above it.

- `models_that_matter` is sent with no arguments when research or health checks choose which
  models to look at closely. A receiver returns `(priority, model_ids)`; lists are taken in
  priority order (lower first), so routing's curated models come before health's most used.
- `model_detail` is sent with `model` (a CatalogModel) when `GET /models/{id}` is answered. A
  receiver returns a dict of keys to add to the answer (health adds "health").
- `prices_changed` is sent by a sync, once per run, before it stores its `price_change` alerts,
  with `changes` ({model id: (prices before, prices after)}, every PRICE_KEYS key) and `at` (the
  sync's time). A receiver returns {model id: (note, details)}: the note is appended to the
  alert's message in parentheses and the details are merged into its details (costs adds what
  last week's traffic would cost at the new prices).
"""

from django.dispatch import Signal

models_that_matter = Signal()
model_detail = Signal()
prices_changed = Signal()
