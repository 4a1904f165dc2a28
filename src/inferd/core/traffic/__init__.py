"""Which version answers: routing, splits, shadow traffic and guarded rollouts."""
