# The Llama API simulator (llama_simulator/ with the `demo` extra) in an image of its own: the
# upstream of the compose stack's `demo` profile and of CI's stack run. A development tool;
# the app's image never carries it. Build from the repository root:
#   docker build -f deploy/simulator.Dockerfile -t llama-team-chat-simulator .
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE}
ENV PATH=/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin simulator \
 && python -m venv /venv
WORKDIR /srv
COPY requirements/demo.txt ./requirements/demo.txt
RUN pip install --require-hashes -r requirements/demo.txt && rm -r requirements
COPY llama_simulator ./llama_simulator
USER 10001
EXPOSE 8100
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8100/v1/models', headers={'Authorization': 'Bearer healthcheck'}), timeout=4)"]
ENTRYPOINT ["python", "-m", "llama_simulator", "--host", "0.0.0.0", "--port", "8100"]
