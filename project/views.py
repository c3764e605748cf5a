"""The demo page and the two job endpoints it calls."""

import json

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

import taskchan
from project.models import DemoResult

#: longest text the demo job accepts, in characters
MAX_TEXT_LENGTH = 1000


@require_GET
def index(request):
    return render(request, "project/index.html", {"max_text_length": MAX_TEXT_LENGTH})


def _bad_request(message):
    return JsonResponse({"error": message}, status=400)


@require_POST
def submit_job(request):
    """Queue ``{"text": ...}`` on ``taskchan.demo``; answer 202 with the message id.

    Takes a JSON body or form fields.
    """
    if request.content_type == "application/json":
        try:
            payload = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _bad_request("The body is not valid JSON.")
        if not isinstance(payload, dict):
            return _bad_request("The body must be a JSON object.")
    else:
        payload = request.POST
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        return _bad_request("The 'text' field must be a string.")
    if not text or not text.strip():
        return _bad_request("Give some text to send: the 'text' field is missing or empty.")
    if len(text) > MAX_TEXT_LENGTH:
        return _bad_request(f"The text is {len(text)} characters; at most {MAX_TEXT_LENGTH}.")
    message_id = taskchan.send("taskchan.demo", {"text": text})
    return JsonResponse({"id": message_id}, status=202)


@require_GET
def job_status(request, message_id):
    """``{"status": "pending"}`` until the consumer stored a result, then the result."""
    result = DemoResult.objects.filter(message_id=message_id).first()
    if result is None:
        return JsonResponse({"status": "pending"})
    return JsonResponse(
        {
            "status": "done",
            "result": result.result,
            "worker_pid": result.worker_pid,
            "finished_at": result.finished_at.isoformat(),
        }
    )
