# syntax=docker/dockerfile:1
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN python -m venv /venv
COPY pyproject.toml ./
COPY chatapp ./chatapp
RUN /venv/bin/pip install .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN SECRET_KEY=collectstatic-only /venv/bin/python manage.py collectstatic --noinput

FROM python:3.11.11-slim-bookworm
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT=8000
RUN useradd --create-home --uid 10001 chat
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build /app /app
USER chat
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=4)"
CMD ["sh", "-c", "exec daphne --proxy-headers -b 0.0.0.0 -p ${PORT} chatapp.asgi:application"]
