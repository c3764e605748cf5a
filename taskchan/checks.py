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
