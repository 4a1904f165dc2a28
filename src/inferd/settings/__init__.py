"""The one settings object, built at the edge and passed down.

Sources, highest first: explicit overrides (CLI flags) > environment (``INFERENCE_`` prefix,
``__`` for nesting, plus the flat names in :data:`FLAT_ENV`) > a YAML file > defaults.
Unknown sections, keys and ``INFERENCE_`` variables are errors. Nothing else in inferd
reads the environment.

One module per part: ``server`` (the server section), ``models`` (models, routing,
performance), ``safeguards`` (safeguards, storage), ``limits`` (limits, stream, shared
memory), ``loading`` (the whole object and how it is built from its sources) and
``environment`` (the metrics folder workers share). Import from here.
"""

from __future__ import annotations

from inferd.settings.environment import metrics_dir, set_metrics_dir
from inferd.settings.limits import (
    GrpcLimits,
    HttpLimits,
    LimitsSettings,
    ModelLimits,
    SharedMemorySettings,
    StreamSettings,
)
from inferd.settings.loading import (
    ENV_PREFIX,
    FLAT_ENV,
    YAML_SECTION_ALIASES,
    LoadedSettings,
    Settings,
    explain_settings,
    load_settings,
    yaml_problem,
)
from inferd.settings.models import ModelsSettings, PerformanceSettings, RoutingSettings
from inferd.settings.safeguards import (
    InputValidationSettings,
    RateLimitSettings,
    SafeguardsSettings,
    StorageSettings,
)
from inferd.settings.server import ORIGIN, ServerSettings

__all__ = [
    "ENV_PREFIX",
    "FLAT_ENV",
    "ORIGIN",
    "YAML_SECTION_ALIASES",
    "GrpcLimits",
    "HttpLimits",
    "InputValidationSettings",
    "LimitsSettings",
    "LoadedSettings",
    "ModelLimits",
    "ModelsSettings",
    "PerformanceSettings",
    "RateLimitSettings",
    "RoutingSettings",
    "SafeguardsSettings",
    "ServerSettings",
    "Settings",
    "SharedMemorySettings",
    "StorageSettings",
    "StreamSettings",
    "explain_settings",
    "load_settings",
    "metrics_dir",
    "set_metrics_dir",
    "yaml_problem",
]
