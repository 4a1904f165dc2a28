"""A version's serving plan: the optional steps its requests pass through, resolved once.

Every optional feature a request may pass through — the prediction cache, a shadow that
mirrors answers, the window of a running rollout, the NaN/Inf check of outputs — is
decided when the version starts serving and again whenever one of them changes for its
model (a shadow set or stopped, a rollout started or ended), never per request. A request
runs exactly the plan of the version that answers it: a step that is off is a ``None``
(or ``False``) the service reads, not a hook it calls to find out that it has nothing to
do. Plans are frozen values: a change makes a new plan and swaps it in with one
assignment, so a request never sees half of one.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final, Protocol

from inferd.core.cache import Cached
from inferd.types import FLOAT_DATATYPES

if TYPE_CHECKING:
    from inferd.core.cache import ResponseCache, VersionCache
    from inferd.core.store.versions import VersionSettings
    from inferd.core.traffic.rollout import Rollout
    from inferd.core.traffic.shadow import Shadow


@dataclasses.dataclass(frozen=True, slots=True)
class ServingPlan:
    """What a version's requests pass through besides decoding, the batcher and encoding."""

    #: The prediction cache, when the version's answers are cached.
    cache: VersionCache | None = None
    #: The model's shadow, when this version's answers are mirrored to it.
    shadow: Shadow | None = None
    #: The model's running rollout, when this version is its canary or stable version.
    rollout: Rollout | None = None
    #: Outputs are checked for NaN/Inf (``nonfinite_outputs: error`` and a float output).
    check_finite: bool = False

    def steps(self) -> list[str]:
        """The names of the steps that are on (for statistics and the docs' examples)."""
        on = (
            ("cache", self.cache is not None),
            ("shadow", self.shadow is not None),
            ("rollout_window", self.rollout is not None),
            ("finite_check", self.check_finite),
        )
        return [name for name, enabled in on if enabled]


#: A plan with every optional step off.
BARE: Final = ServingPlan()


class Planned(Cached, Protocol):
    """What a plan is resolved from: the store's ``LoadedVersion`` (which holds its plan,
    so this module does not import it)."""

    @property
    def version(self) -> str: ...

    @property
    def settings(self) -> VersionSettings: ...


def plan_for(
    loaded: Planned,
    cache: ResponseCache | None,
    shadow: Shadow | None,
    rollout: Rollout | None,
) -> ServingPlan:
    """The plan of ``loaded`` given its model's cache store, shadow and running rollout."""
    settings = loaded.settings
    return ServingPlan(
        cache=cache.bound(loaded) if cache is not None and settings.cache else None,
        # The shadow version's own answers are not mirrored to itself.
        shadow=shadow if shadow is not None and shadow.version != loaded.version else None,
        rollout=rollout
        if rollout is not None and loaded.version in (rollout.canary, rollout.stable)
        else None,
        check_finite=settings.nonfinite_outputs == "error"
        and any(spec.datatype in FLOAT_DATATYPES for spec in loaded.outputs),
    )
