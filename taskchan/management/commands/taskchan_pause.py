"""``manage.py taskchan_pause CHANNEL [CHANNEL ...] [--resume]``: pause or resume taskchan channels.

A thin command over ``taskchan.pause`` / ``taskchan.resume`` (``taskchan/flow/pause.py``):
the state is kept in Redis, so it holds for every worker and survives restarts.
"""

from __future__ import annotations

import getpass

from django.core.management import BaseCommand, CommandError

from taskchan.exceptions import TaskchanError
from taskchan.flow.pause import pause, resume


class Command(BaseCommand):
    help = "Pause taskchan channels (sends are still accepted; nothing new starts), or resume them with --resume."

    def add_arguments(self, parser):
        parser.add_argument("channels", nargs="+", metavar="CHANNEL", help="e.g. taskchan.thumbnails")
        parser.add_argument("--resume", action="store_true", help="resume the channels instead")

    def handle(self, *args, **options):
        try:
            for channel in options["channels"]:
                if options["resume"]:
                    resume(channel)
                else:
                    pause(channel, by=f"{getpass.getuser()} (manage.py taskchan_pause)")
        except (TaskchanError, ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:  # Redis did not answer
            raise CommandError(f"could not reach the store: {exc}") from None
        verb = "Resumed" if options["resume"] else "Paused"
        self.stdout.write(f"{verb} {', '.join(options['channels'])}.")
