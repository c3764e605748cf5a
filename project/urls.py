from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from project import views
from taskchan.compat import HAS_DJANGO_TASKS
from taskchan.metrics import metrics_view

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/", views.submit_job, name="submit-job"),
    path("jobs/long/", views.submit_long_job, name="submit-long-job"),
    path("jobs/<str:message_id>/", views.job_status, name="job-status"),
    path("admin/", admin.site.urls),
    # Prometheus scrape target: no login; restrict it at the proxy (docs/configuration.md).
    path("metrics", metrics_view, name="metrics"),
]

if HAS_DJANGO_TASKS:  # the django.tasks demo: count_words (project/task_demo.py)
    urlpatterns += [
        path("tasks/", views.enqueue_task, name="enqueue-task"),
        path("tasks/<str:result_id>/", views.task_result, name="task-result"),
    ]

# Serves the admin's CSS under plain daphne when DEBUG is on (empty otherwise).
urlpatterns += staticfiles_urlpatterns()
