from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TaskchanConfig(AppConfig):
    name = "taskchan"
    verbose_name = "taskchan"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from importlib import import_module

        from . import checks, store_checks  # noqa: F401  (registers the system checks)
        from .compat import HAS_DJANGO_TASKS
        from .conf import settings

        # Consumers register themselves when their module is imported: every
        # installed app's consumers.py, then any modules the settings list.
        autodiscover_modules("consumers")
        for module in settings.CONSUMER_MODULES:
            import_module(module)
        if HAS_DJANGO_TASKS:
            # The django.tasks backends in TASKS declare their queues' consumers.
            import_module("taskchan.backend.runner").register_configured()
