"""What health asks of the apps above it.

- `model_cooldowns` is sent with no arguments when GET /health/models is answered. A receiver
  returns {model id: {"cooldown": {...} | None, "role_cooldowns": {role: {...}}}}, each cooldown
  as {state, reason, until, trips}; routing answers (its circuit breakers: routing.cooldowns).
"""

from django.dispatch import Signal

model_cooldowns = Signal()
