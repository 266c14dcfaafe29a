"""What the catalog asks of, and tells, the apps above it.

- `models_that_matter` is sent with no arguments when research or health checks choose which
  models to look at closely. A receiver returns `(priority, model_ids)`; lists are taken in
  priority order (lower first), so routing's curated models come before health's most used.
- `model_detail` is sent with `model` (a CatalogModel) when `GET /models/{id}` is answered. A
  receiver returns a dict of keys to add to the answer (health adds "health").
"""

from django.dispatch import Signal

models_that_matter = Signal()
model_detail = Signal()
