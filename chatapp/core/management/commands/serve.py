"""`manage.py serve`: WEB_CONCURRENCY daphne processes on one port (chatapp.core.supervisor)."""

import os
import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from chatapp.core.supervisor import (
    ServeError,
    Supervisor,
    check_processes,
    cpu_count,
    database_note,
    listen,
)

MAX_PROCESSES = 256  # as WEB_CONCURRENCY


class Command(BaseCommand):
    help = "Serve the app with WEB_CONCURRENCY daphne processes sharing one listening socket."
    requires_system_checks: list[str] = []  # each server process runs them as it starts

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
        parser.add_argument(
            "--fd", type=int, help="serve a socket that is already listening (instead of bind)"
        )
        parser.add_argument(
            "--processes",
            help="how many server processes: a number, or 'auto' for one per core"
            " (default: WEB_CONCURRENCY)",
        )
        parser.add_argument(
            "--proxy-headers", action="store_true", help="believe X-Forwarded-* (daphne's option)"
        )
        parser.add_argument("--verbosity-daphne", type=int, default=1, dest="daphne_verbosity")

    def handle(self, *args, **options) -> None:
        processes = self._processes(options["processes"])
        try:
            check_processes(processes, settings.REDIS_URL)
            if options["fd"] is not None:
                listener = socket.socket(fileno=options["fd"])
            else:
                listener = listen(options["bind"], options["port"])
        except (ServeError, OSError) as error:
            raise CommandError(str(error)) from None
        host, port = listener.getsockname()[:2]
        layer = "Redis" if settings.REDIS_URL else "in-memory"
        noun = "process" if processes == 1 else "processes"
        self.stderr.write(
            f"Serving on {host}:{port} with {processes} server {noun} ({layer} channel layer)."
        )
        note = database_note(processes, connection.vendor)
        if note:
            self.stderr.write(note)
        # The app writes its own access log (chatapp.access: the request id, credentials in
        # the path blanked out); daphne's would repeat each line with the whole path.
        daphne_args = ["--verbosity", str(options["daphne_verbosity"]), "--access-log", os.devnull]
        if options["proxy_headers"]:
            daphne_args.append("--proxy-headers")
        try:
            Supervisor(listener, processes, daphne_args, say=self.stderr.write).run()
        except ServeError as error:
            raise CommandError(str(error)) from None

    def _processes(self, value: str | None) -> int:
        if value is None:
            return int(settings.WEB_CONCURRENCY)
        if value == "auto":
            return cpu_count()
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PROCESSES:
            raise CommandError(
                f"--processes must be a number from 1 to {MAX_PROCESSES}, or 'auto' (got {value!r})"
            )
        return int(value)
