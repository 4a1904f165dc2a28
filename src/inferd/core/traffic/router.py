"""Which version answers a request: a named version, a label, or the model's traffic split.

A request that names a version (or a label of ``model.yaml``'s ``labels``) gets that
version. A request that names none gets the model's traffic split when it has one, else
the latest version. A split is integer weights per version summing to 100:

- with a routing key the choice is sticky: weighted rendezvous hashing (each version scores
  ``-weight / ln(u)``, ``u`` a stable hash of key and version in (0, 1), the highest score
  wins), so a key keeps its version for a given split, and moving weight from one version
  to another moves only the keys that must move;
- without a key it is weighted random.

A split member that is not served (unloaded, failed to reload) takes no traffic: the split
is restricted to the members that are served; when none is, the latest version answers.
``model.yaml``'s ``traffic`` is the initial split; every (re)load of the model resets to it.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import random
from collections.abc import Mapping

from inferd.core.store.loaded import LoadedVersion
from inferd.core.store.manager import ModelManager
from inferd.core.store.model_config import TRAFFIC_TOTAL, ModelConfig
from inferd.errors import InvalidArgument, Unavailable
from inferd.settings import RoutingSettings

_SCALE = float(1 << 64)
#: Routing keys whose choice a split remembers (cleared whole when full).
CHOICES_KEPT = 4096


def _unit(key: bytes, version: bytes) -> float:
    """A stable number in (0, 1) for a key and a version."""
    digest = hashlib.blake2b(key + b"\x00" + version, digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


@dataclasses.dataclass(frozen=True, slots=True)
class Split:
    """A traffic split, with what choosing from it needs computed once."""

    weights: dict[str, int]
    #: Versions with a weight above 0, their names as bytes and their cumulative weights.
    members: tuple[str, ...]
    encoded: tuple[bytes, ...]
    cumulative: tuple[int, ...]
    #: The split among the members that are served, by the set of them (made once each).
    reduced: dict[frozenset[str], Split] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    #: The member chosen for a routing key (a key keeps it: the choice is a function of
    #: the key and the split), up to :data:`CHOICES_KEPT` keys.
    chosen: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, weights: Mapping[str, int]) -> Split:
        members = tuple(v for v, w in weights.items() if w > 0)
        running, cumulative = 0, []
        for version in members:
            running += weights[version]
            cumulative.append(running)
        return cls(
            dict(weights),
            members,
            tuple(v.encode() for v in members),
            tuple(cumulative),
        )

    def pick(self, key: str | None, served: Mapping[str, LoadedVersion]) -> str | None:
        """The version for ``key`` (weighted random without one) among the served members;
        None when no member is served."""
        chosen = self.choose(key)
        if chosen in served:
            return chosen
        # A member is gone: choose among those that are left (a key's winner among fewer
        # candidates is its winner among all when that one is served, so keys stay put).
        serving = frozenset(v for v in self.members if v in served)
        if not serving:
            return None
        reduced = self.reduced.get(serving)
        if reduced is None:
            reduced = self.reduced[serving] = Split.of(
                {v: self.weights[v] for v in self.members if v in serving}
            )
        return reduced.choose(key)

    def choose(self, key: str | None) -> str:
        """The member for ``key``; weighted random without one."""
        if key is None:
            point = random.random() * self.cumulative[-1]
            return self.members[bisect.bisect_right(self.cumulative, point)]
        best = self.chosen.get(key)
        if best is not None:
            return best
        encoded = key.encode()
        best, best_score = self.members[0], -math.inf
        for version, name in zip(self.members, self.encoded, strict=True):
            score = -self.weights[version] / math.log(_unit(encoded, name))
            if score > best_score:
                best, best_score = version, score
        if len(self.chosen) >= CHOICES_KEPT:
            self.chosen.clear()
        self.chosen[key] = best
        return best


def check_weights(weights: object, where: str) -> dict[str, int]:
    """``weights`` as a split: a non-empty mapping of version -> integer >= 0, total 100."""
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidArgument(
            f'{where}: expected a mapping of version -> weight, e.g. {{"1": 90, "2": 10}}'
        )
    checked: dict[str, int] = {}
    for version, weight in weights.items():
        if not isinstance(version, str) or not version:
            raise InvalidArgument(f"{where}: version names are non-empty strings, got {version!r}")
        if type(weight) is not int or weight < 0:
            raise InvalidArgument(
                f"{where}: the weight of version '{version}' must be an integer >= 0, "
                f"got {weight!r}"
            )
        checked[version] = weight
    total = sum(checked.values())
    if total != TRAFFIC_TOTAL:
        raise InvalidArgument(f"{where}: weights must sum to {TRAFFIC_TOTAL}, got {total}")
    return checked


class Router:
    """Resolves (model, version or label, routing key) to the version that answers."""

    def __init__(self, manager: ModelManager, settings: RoutingSettings | None = None) -> None:
        self._manager = manager
        self._settings = settings or RoutingSettings()
        self._splits: dict[str, Split] = {}
        self._labels: dict[str, dict[str, str]] = {}
        manager.on_serve(self._reset)

    def _reset(self, model: str, config: ModelConfig | None) -> None:
        """A model was (re)loaded from ``config``, or unloaded (None): back to its yaml split."""
        self._labels.pop(model, None)
        self._splits.pop(model, None)
        if config is None:
            return
        if config.labels:
            self._labels[model] = dict(config.labels)
        if config.traffic is not None:
            self._splits[model] = Split.of(config.traffic)

    def resolve(
        self, model: str, version: str | None = None, key: str | None = None
    ) -> LoadedVersion:
        """The version that answers: ``version`` (a version or a label) when given, else
        the split's choice for ``key`` when the model has a split, else the latest."""
        if key is not None and len(key) > self._settings.max_key_length:
            raise InvalidArgument(
                f"the routing key is {len(key)} characters long; at most "
                f"{self._settings.max_key_length} are accepted"
            )
        if version:
            return self.named(model, version)
        split = self._splits.get(model)
        if split is None:
            return self._manager.resolve(model)
        served = self._manager.served(model)
        chosen = split.pick(key, served)
        return served[chosen] if chosen is not None else self._manager.resolve(model)

    def named(self, model: str, version: str | None = None) -> LoadedVersion:
        """``version`` (a version or a label) of ``model``; the latest when None, whatever
        the split (what metadata, configuration and readiness describe)."""
        if version:
            labels = self._labels.get(model)
            if labels is not None:
                version = labels.get(version, version)
        return self._manager.resolve(model, version or None)

    def labels(self, model: str) -> dict[str, str]:
        return dict(self._labels.get(model, {}))

    def traffic(self, model: str) -> dict[str, int] | None:
        """The model's current split; None when requests without a version get the latest."""
        self._manager.versions(model)  # NotFound for a model that is not known
        split = self._splits.get(model)
        return None if split is None else dict(split.weights)

    def primary_share(self, model: str, version: str) -> int:
        """The percentage of the model's requests that name no version which ``version``
        answers now: its share of the split among the served members, else 100 for the
        latest and 0 for the others (0 too while the model serves nothing)."""
        try:
            served = self._manager.served(model)
        except Unavailable:
            return 0
        split = self._splits.get(model)
        if split is None:
            return TRAFFIC_TOTAL if version == self._manager.resolve(model).version else 0
        left = {v: split.weights[v] for v in split.members if v in served}
        if version not in left:
            return 0
        return round(TRAFFIC_TOTAL * left[version] / sum(left.values()))

    def set_traffic(self, model: str, weights: Mapping[str, int] | None) -> None:
        """Replace the model's split (None: the latest answers). Every version it names must
        be served now."""
        served = self._manager.versions(model)
        if weights is None:
            self._splits.pop(model, None)
            return
        checked = check_weights(weights, f"traffic of model '{model}'")
        unserved = [v for v in checked if v not in served]
        if unserved:
            raise InvalidArgument(
                f"traffic of model '{model}': version '{unserved[0]}' is not served; "
                f"serving {served}"
            )
        self._splits[model] = Split.of(checked)
