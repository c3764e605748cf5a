from django.contrib import admin

from project.models import DemoResult


@admin.register(DemoResult)
class DemoResultAdmin(admin.ModelAdmin):
    list_display = ["message_id", "text", "result", "worker_pid", "finished_at"]
    search_fields = ["message_id", "text"]
    readonly_fields = ["message_id", "text", "result", "worker_pid", "finished_at"]

    def has_add_permission(self, request):
        return False
