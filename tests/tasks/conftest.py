"""The django.tasks backend's tests: Django 6.0+ only (the 5.2 compat run does not collect tests/tasks/)."""
