# Two stages: `build` installs the dependencies into a virtualenv and collects the static files
# with hashed names; the runtime stage copies only those and runs as an unprivileged user.
# BASE_IMAGE: a Debian-based Python 3.11 with `python` and venv. Where the registry can't be
# reached, deploy/base-images.sh builds a stand-in from Debian's packages and passes it here.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN python -m venv /venv
# The hash-pinned dependencies alone first, so a code change reuses this layer.
COPY requirements/base.txt ./requirements/base.txt
RUN /venv/bin/pip install --require-hashes -r requirements/base.txt
COPY manage.py ./
COPY chatapp ./chatapp
COPY templates ./templates
COPY static ./static
COPY deploy/docker-entrypoint.sh ./deploy/docker-entrypoint.sh
RUN SECRET_KEY=collectstatic-only DEBUG=0 STATIC_MANIFEST=1 STATIC_ROOT=/app/staticfiles \
    /venv/bin/python manage.py collectstatic --noinput --verbosity 0 \
 && /venv/bin/python -m compileall -q chatapp \
 && rm -r requirements

FROM ${BASE_IMAGE}
ENV PATH=/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    STATIC_ROOT=/app/staticfiles \
    DATABASE_URL=sqlite:////data/db.sqlite3 \
    MEDIA_ROOT=/data/media
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin chat \
 && mkdir -p /data/media && chown -R chat /data
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build /app /app
USER 10001
EXPOSE 8000
# Liveness: /healthz answers 200 only while the database and the channel layer do.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["serve"]
