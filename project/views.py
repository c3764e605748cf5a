"""The demo page and the two job endpoints it calls."""

import json

from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

import taskchan
from project.consumers import FAILING_CHANNEL, LONG_CHANNEL
from project.models import DemoResult
from taskchan.models import FailedMessage

#: longest text the demo job accepts, in characters
MAX_TEXT_LENGTH = 1000


@require_GET
def index(request):
    return render(request, "project/index.html", {"max_text_length": MAX_TEXT_LENGTH})


def _bad_request(message):
    return JsonResponse({"error": message}, status=400)


def _json_body(request):
    """The request's JSON object, or the 400 response saying why there is none."""
    try:
        payload = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _bad_request("The body is not valid JSON.")
    if not isinstance(payload, dict):
        return _bad_request("The body must be a JSON object.")
    return payload


@require_POST
def submit_job(request):
    """Queue ``{"text": ...}`` on ``taskchan.demo``; answer 202 with the message id.

    Takes a JSON body or form fields.  With ``"fail": true`` (or the form field
    ``fail=1``) the job goes to ``taskchan.demo-fails``, whose consumer always
    raises: it is retried once and then kept as a dead letter in the admin.
    """
    if request.content_type == "application/json":
        payload = _json_body(request)
        if isinstance(payload, JsonResponse):
            return payload
    else:
        payload = request.POST
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        return _bad_request("The 'text' field must be a string.")
    if not text or not text.strip():
        return _bad_request("Give some text to send: the 'text' field is missing or empty.")
    if len(text) > MAX_TEXT_LENGTH:
        return _bad_request(f"The text is {len(text)} characters; at most {MAX_TEXT_LENGTH}.")
    fail = payload.get("fail") in (True, "1", "true")
    message_id = taskchan.send(FAILING_CHANNEL if fail else "taskchan.demo", {"text": text})
    return JsonResponse({"id": message_id}, status=202)


@require_GET
def job_status(request, message_id):
    """``{"status": "pending"}`` until the consumer stored a result, then the
    result; ``"failed"`` with the error and the admin page once it is a dead letter."""
    result = DemoResult.objects.filter(message_id=message_id).first()
    if result is None:
        dead = FailedMessage.objects.filter(message_id=message_id).first()
        if dead is None:
            return JsonResponse({"status": "pending"})
        return JsonResponse(
            {
                "status": "failed",
                "attempts": dead.attempts,
                "error": f"{dead.last_error_type.rsplit('.', 1)[-1]}: {dead.last_error}",
                "admin_url": reverse("admin:taskchan_failedmessage_change", args=[dead.pk]),
            }
        )
    return JsonResponse(
        {
            "status": "done",
            "result": result.result,
            "worker_pid": result.worker_pid,
            "finished_at": result.finished_at.isoformat(),
        }
    )


@require_POST
def enqueue_task(request):
    """Enqueue the django.tasks demo task ``count_words`` with form field ``text``; 202 with its result id."""
    # django.tasks is Django 6.0+ (the URL exists only there): imported on use
    from project.task_demo import count_words

    text = request.POST.get("text", "")
    if not text.strip() or len(text) > MAX_TEXT_LENGTH:
        return _bad_request(f"Give 1 to {MAX_TEXT_LENGTH} characters of text in the 'text' field.")
    result = count_words.enqueue(text)
    return JsonResponse({"id": result.id, "status": result.status}, status=202)


@require_GET
def task_result(request, result_id):
    """The TaskResult of ``count_words`` ``result_id``, read from any process (404 when unknown)."""
    from django.tasks.exceptions import TaskResultDoesNotExist

    from project.task_demo import count_words

    try:
        result = count_words.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such task result"}, status=404)
    body = {
        "status": result.status,
        "attempts": result.attempts,
        "worker_ids": result.worker_ids,
        "errors": [e.exception_class_path for e in result.errors],
    }
    if result.status == "SUCCESSFUL":
        body["return_value"] = result.return_value
    return JsonResponse(body)


#: most steps the long job may be asked for
MAX_STEPS = 20


@require_POST
def submit_long_job(request):
    """Queue the long job (``{"steps": 1..20, "fail": bool}``, JSON); answer 202 with its id
    and the token the page watches it with (``taskchan.progress_token``)."""
    payload = _json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    steps = payload.get("steps", 5)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        return _bad_request(f"'steps' must be a whole number from 1 to {MAX_STEPS}.")
    fail = payload.get("fail") is True
    # The failing one is not retried, so that the page shows its failure at once.
    message_id = taskchan.send(LONG_CHANNEL, {"steps": steps, "fail": fail}, max_attempts=1 if fail else None)
    return JsonResponse({"id": message_id, "token": taskchan.progress_token(message_id, max_age=600)}, status=202)
