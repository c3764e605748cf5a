"""Optional features and the packages they need (``pip install 'django-taskchan[EXTRA]'``).

A plain ``pip install django-taskchan`` brings only what every project needs
(Django, channels, channels_redis, redis, tenacity).  A feature that needs more
imports its package through :func:`require`, which names the extra to install
when it is missing; the system checks in ``checks.py`` report the same at
start-up wherever the settings or URLs show that a feature is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from .exceptions import MissingExtra


@dataclass(frozen=True, slots=True)
class Extra:
    name: str  # as in django-taskchan[name]
    module: str  # the top-level module the extra's package provides
    feature: str  # what taskchan uses it for, for the error message


#: every extra django-taskchan declares in pyproject.toml
EXTRAS = {
    "celery": Extra("celery", "celery", "handing channels off to Celery (handoff='celery')"),
    "prometheus": Extra(
        "prometheus", "prometheus_client", "Prometheus metrics (metrics_view, runworker --metrics-port)"
    ),
    "encryption": Extra(
        "encryption", "cryptography", "encryption at rest (the layer's symmetric_encryption_keys)"
    ),
}


def installed(name: str) -> bool:
    """Whether the extra's package can be imported (without importing it)."""
    return importlib.util.find_spec(EXTRAS[name].module) is not None


def missing_message(name: str) -> str:
    extra = EXTRAS[name]
    return (
        f"{extra.feature[0].upper()}{extra.feature[1:]} needs the {extra.module!r} package, which is not "
        f"installed. Install taskchan with the {extra.name!r} extra: pip install 'django-taskchan[{extra.name}]'"
    )


def require(name: str):
    """The extra's top-level module, imported; MissingExtra, naming the extra, when it is not installed."""
    module = EXTRAS[name].module
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module and not module.startswith(f"{exc.name}."):
            raise  # the package is there but something it imports is broken: show that
        raise MissingExtra(missing_message(name)) from None
