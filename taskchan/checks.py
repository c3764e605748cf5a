"""Django system checks for the mistakes that make taskchan silently misbehave."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register()
def check_app_order(app_configs, **kwargs):
    apps = list(settings.INSTALLED_APPS)
    names = [a.split(".apps.")[0] for a in apps]
    errors = []
    if "channels" in names and "taskchan" in names and names.index("taskchan") > names.index("channels"):
        errors.append(
            checks.Error(
                "'taskchan' is listed after 'channels' in INSTALLED_APPS, so 'manage.py runworker' "
                "is channels' worker, which does not acknowledge or retry taskchan messages.",
                hint="Move 'taskchan' above 'channels' (and above 'daphne') in INSTALLED_APPS.",
                id="taskchan.E001",
            )
        )
    if "daphne" in names and "taskchan" in names and names.index("taskchan") > names.index("daphne"):
        errors.append(
            checks.Warning(
                "'taskchan' is listed after 'daphne' in INSTALLED_APPS, so 'manage.py runserver' "
                "does not run taskchan's in-process workers on the in-memory layer.",
                hint="Move 'taskchan' above 'daphne' in INSTALLED_APPS.",
                id="taskchan.W002",
            )
        )
    return errors


@checks.register()
def check_layer(app_configs, **kwargs):
    from .conf import settings as taskchan_settings

    alias = taskchan_settings.LAYER
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get(alias, {}).get("BACKEND")
    if backend in ("taskchan.layers.RedisChannelLayer", "taskchan.layers.InMemoryChannelLayer"):
        return []
    return [
        checks.Error(
            f"CHANNEL_LAYERS[{alias!r}] is {backend or 'not configured'}, not a taskchan layer: "
            "taskchan.send() has nowhere to store messages.",
            hint="Set its BACKEND to 'taskchan.layers.RedisChannelLayer' (with CONFIG hosts) or "
            "'taskchan.layers.InMemoryChannelLayer' for development.",
            id="taskchan.E003",
        )
    ]


@checks.register()
def check_encryption(app_configs, **kwargs):
    """The layer's symmetric_encryption_keys, as the store will read them (E009), and what they do not seal (W010)."""
    from django.core.exceptions import ImproperlyConfigured

    from . import registry
    from .stores.codec import layer_codec

    try:
        codec = layer_codec()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="taskchan.E009")]
    handed_off = sorted(c.channel for c in registry.all_consumers().values() if c.handoff)
    if not codec.encrypted or not handed_off:
        return []
    return [
        checks.Warning(
            f"{', '.join(handed_off)} hand off to Celery: their messages wait in Celery's broker, which "
            "the layer's symmetric_encryption_keys do not seal.",
            hint="Keep content that must be encrypted at rest off channels with handoff=\"celery\", or "
            "protect Celery's broker itself.",
            id="taskchan.W010",
        )
    ]


#: settings read outside conf.DEFAULTS (by taskchan.handoff)
EXTRA_SETTINGS = ("CELERY_APP",)

#: seconds: the shortest interval at which a worker's lease renewals can be
#: relied on.  Renewals are sent every visibility_timeout / 3 from the worker's
#: maintenance pass, which also promotes due messages, reclaims lapsed leases and
#: backs off on Redis errors (0.1 s, doubling); a renewal can therefore land up
#: to one pass (POLL_INTERVAL plus Redis round trips, more under load) late.
#: Below about 1 s between renewals that slack is a real share of the lease, so
#: a busy or briefly disconnected worker can lose a lease on a job it is still
#: running, and the job runs twice.  This is a rule of thumb, not a measured
#: bound: taskchan has no per-job time limit to compare the lease against.
LEASE_RENEWAL_FLOOR = 1.0


def _known_settings() -> list[str]:
    from .conf import DEFAULTS

    return [*DEFAULTS, *EXTRA_SETTINGS]


@checks.register()
def check_setting_types(app_configs, **kwargs):
    """Every TASKCHAN_* setting has the type conf.settings expects (E004)."""
    from django.core.exceptions import ImproperlyConfigured

    from .conf import DEFAULTS
    from .conf import settings as taskchan_settings

    errors = []
    for name in DEFAULTS:
        try:
            getattr(taskchan_settings, name)
        except ImproperlyConfigured as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint=f"Give TASKCHAN_{name} a value of the type shown, or remove it to use the default.",
                    obj=f"settings.TASKCHAN_{name}",
                    id="taskchan.E004",
                )
            )
    return errors


@checks.register()
def check_unknown_settings(app_configs, **kwargs):
    """A TASKCHAN_* setting taskchan does not read is most likely a typo (W005)."""
    import difflib

    known = _known_settings()
    warnings = []
    for attr in sorted(dir(settings)):
        if not attr.startswith("TASKCHAN_"):
            continue
        name = attr.removeprefix("TASKCHAN_")
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            hint = f"Did you mean TASKCHAN_{close[0]}? Rename the setting."
        else:
            hint = "Remove it, or see docs/configuration.md for the settings taskchan reads."
        warnings.append(
            checks.Warning(
                f"{attr} is not a taskchan setting, so it has no effect.",
                hint=hint,
                obj=f"settings.{attr}",
                id="taskchan.W005",
            )
        )
    return warnings


@checks.register(deploy=True)
def check_memory_layer_in_production(app_configs, **kwargs):
    """The in-memory layer with DEBUG off: runworker processes share nothing with it (W006).

    A deployment check (``manage.py check --deploy``): with DEBUG off one expects
    separate runworker processes, and they cannot see messages kept in the memory
    of the web process.
    """
    from .conf import settings as taskchan_settings

    if settings.DEBUG:
        return []
    try:
        alias = taskchan_settings.LAYER
    except Exception:  # E004 reports a bad TASKCHAN_LAYER
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    if layers.get(alias, {}).get("BACKEND") != "taskchan.layers.InMemoryChannelLayer":
        return []
    return [
        checks.Warning(
            f"CHANNEL_LAYERS[{alias!r}] is taskchan.layers.InMemoryChannelLayer with DEBUG off: "
            "messages stay in the sending process, so workers in other processes will never see "
            "these messages.",
            hint="Use 'taskchan.layers.RedisChannelLayer' with CONFIG hosts (in the reference project: "
            "set REDIS_URL) for every process that sends or runs 'manage.py runworker'.",
            id="taskchan.W006",
        )
    ]


@checks.register(deploy=True)
def check_visibility_timeouts(app_configs, **kwargs):
    """A visibility timeout too short for its leases to be renewed reliably (W007).

    A deployment check: the test suite uses 1 s timeouts on purpose, to see
    redeliveries quickly.
    """
    from django.core.exceptions import ImproperlyConfigured

    from . import registry
    from .conf import settings as taskchan_settings

    minimum = 3 * LEASE_RENEWAL_FLOOR
    warnings = []
    try:
        default = float(taskchan_settings.VISIBILITY_TIMEOUT)
    except ImproperlyConfigured:  # reported by E004
        return []
    if default < minimum:
        warnings.append(
            checks.Warning(
                f"TASKCHAN_VISIBILITY_TIMEOUT is {default:g} s: leases are renewed every third of it, "
                f"less than {LEASE_RENEWAL_FLOOR:g} s apart, so a busy worker can lose the lease on a job "
                "it is still running and the job runs twice.",
                hint=f"Set TASKCHAN_VISIBILITY_TIMEOUT to at least {minimum:g} seconds (default 30).",
                obj="settings.TASKCHAN_VISIBILITY_TIMEOUT",
                id="taskchan.W007",
            )
        )
    for channel, entry in sorted(registry.all_consumers().items()):
        if entry.visibility_timeout_option is None:
            continue  # follows the setting, checked above
        seconds = float(entry.visibility_timeout_option)
        if seconds < minimum:
            warnings.append(
                checks.Warning(
                    f"Consumer {entry.name} of {channel!r} has visibility_timeout={seconds:g} s: leases are "
                    f"renewed every third of it, less than {LEASE_RENEWAL_FLOOR:g} s apart, so a busy worker "
                    "can lose the lease on a job it is still running and the job runs twice.",
                    hint=f"Pass visibility_timeout of at least {minimum:g} seconds to @taskchan.consumer, "
                    "or leave it out to follow TASKCHAN_VISIBILITY_TIMEOUT.",
                    obj=entry.name,
                    id="taskchan.W007",
                )
            )
    return warnings


# -- installation: what a new project misses (taskchan.E02x) -------------------


@checks.register()
def check_asgi_application(app_configs, **kwargs):
    """runserver is daphne's where daphne is installed, and daphne needs ASGI_APPLICATION (E020)."""
    from importlib.util import find_spec

    if getattr(settings, "ASGI_APPLICATION", None) or find_spec("daphne") is None:
        return []
    return [
        checks.Error(
            "ASGI_APPLICATION is not set, and 'manage.py runserver' is daphne's ASGI server (taskchan's "
            "runserver runs on it when daphne is installed), so runserver cannot start.",
            hint="Point it at the application in the asgi.py that startproject made, e.g. "
            "ASGI_APPLICATION = 'mysite.asgi.application' (docs/quickstart.md shows one that also "
            "serves websockets).",
            obj="settings.ASGI_APPLICATION",
            id="taskchan.E020",
        )
    ]


def _mounts(patterns, view) -> bool:
    """Whether ``view`` is reachable through these URL patterns (included ones too)."""
    for pattern in patterns:
        if getattr(pattern, "callback", None) is view:
            return True
        if hasattr(pattern, "url_patterns") and _mounts(pattern.url_patterns, view):
            return True
    return False


@checks.register(checks.Tags.urls)
def check_prometheus_extra(app_configs, **kwargs):
    """metrics_view in the URLs without prometheus_client installed (E021)."""
    from . import extras

    if extras.installed("prometheus"):
        return []
    from django.urls import get_resolver

    from .metrics import metrics_view

    try:
        patterns = get_resolver().url_patterns
    except Exception:  # a broken URLconf: Django's own URL checks report it
        return []
    if not _mounts(patterns, metrics_view):
        return []
    return [
        checks.Error(
            f"The URLs serve taskchan.metrics.metrics_view. {extras.missing_message('prometheus')}",
            hint="Install the extra, or remove metrics_view from the URLs.",
            obj="taskchan.metrics.metrics_view",
            id="taskchan.E021",
        )
    ]


@checks.register()
def check_celery_extra(app_configs, **kwargs):
    """A consumer declared with handoff='celery' without Celery installed (E022)."""
    from . import extras, registry

    if extras.installed("celery"):
        return []
    return [
        checks.Error(
            f"{channel!r} hands off to Celery (handoff='celery'). {extras.missing_message('celery')}",
            hint="Install the extra, or drop handoff='celery' from the consumer.",
            obj=entry.name,
            id="taskchan.E022",
        )
        for channel, entry in sorted(registry.all_consumers().items())
        if entry.handoff == "celery"
    ]


@checks.register()
def check_tasks_backend_django_version(app_configs, **kwargs):
    """TASKS names the taskchan backend on a Django without django.tasks (5.2) (E023)."""
    from .compat import HAS_DJANGO_TASKS

    tasks = getattr(settings, "TASKS", {})
    if HAS_DJANGO_TASKS or not isinstance(tasks, dict):
        return []
    return [
        checks.Error(
            f"TASKS[{alias!r}] uses taskchan.backend.TaskchanBackend, a django.tasks backend, "
            "which needs Django 6.0 or later.",
            hint="Upgrade Django, or send with taskchan.send() and @taskchan.consumer.",
            id="taskchan.E023",
        )
        for alias, params in sorted(tasks.items())
        if isinstance(params, dict) and params.get("BACKEND") == "taskchan.backend.TaskchanBackend"
    ]
