"""The catalog admin: curators enable, disable and annotate models, edit families and categories,
trigger syncs, and read what the sync and research jobs recorded."""

from catalog.admin import common, families, models, runs  # noqa: F401  (each registers its admins)
