"""docker-compose.yml, the nginx, Prometheus and Grafana files: parse, agree, and fit the app."""

import ipaddress
import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from chatapp.core import metrics, supervisor
from tests.deploy.files import (
    ROOT,
    build_args,
    clean_env,
    compose,
    documented_variables,
    interpolate,
    load_settings,
)

CORE = ("app", "proxy", "db", "redis")
OPERATOR_ENV = {
    "SECRET_KEY": "k" * 50,
    "ALLOWED_HOSTS": "chat.example.com",
    "LLAMA_API_KEY": "operator-key-0123456789",
}


def app_env(**operator) -> dict[str, str]:
    raw = compose()["services"]["app"]["environment"]
    return {
        name: interpolate(str(value), {**OPERATOR_ENV, **operator}) for name, value in raw.items()
    }


def test_the_core_services_have_health_checks_and_restart():
    services = compose()["services"]
    for name in CORE:
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]


def test_two_daphne_replicas_start_after_the_database_and_redis():
    app = compose()["services"]["app"]
    assert app["deploy"]["replicas"] == 2
    assert "ports" not in app, "replicas are reached through the proxy"
    assert app["expose"] == ["8000"]
    assert app["build"]["context"] == "."
    assert interpolate(app["build"]["args"]["BASE_IMAGE"], {}) == build_args()["BASE_IMAGE"]
    assert app["command"] == ["serve"]
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    probe = " ".join(app["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in probe


def test_the_app_reaches_the_database_and_redis_it_is_given():
    services = compose()["services"]
    env = app_env()
    database = urlsplit(env["DATABASE_URL"])
    db = services["db"]["environment"]
    assert (database.hostname, database.port) == ("db", 5432)
    assert database.username == db["POSTGRES_USER"]
    assert database.path == "/" + db["POSTGRES_DB"]
    assert "POSTGRES_PASSWORD" in str(services["app"]["environment"]["DATABASE_URL"])
    redis = urlsplit(env["REDIS_URL"])
    assert (redis.hostname, redis.port) == ("redis", 6379)
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert set(compose()["volumes"]) >= {"pgdata"}


def test_secret_key_and_allowed_hosts_are_required():
    with pytest.raises(KeyError, match="SECRET_KEY"):
        app_env(SECRET_KEY="")
    with pytest.raises(KeyError, match="ALLOWED_HOSTS"):
        app_env(ALLOWED_HOSTS="")


def test_the_app_environment_loads_as_production_settings():
    names = (
        "DEBUG",
        "DATABASES",
        "CHANNEL_LAYERS",
        "SECURE_SSL_REDIRECT",
        "SECURE_PROXY_SSL_HEADER",
        "METRICS_ALLOWED_NETWORKS",
    )
    result = load_settings(clean_env(**app_env()), *names)
    assert result.returncode == 0, result.stderr
    debug, databases, layers, redirect, proxy_header, networks = result.stdout.splitlines()
    assert debug == "False"
    assert "django.db.backends.postgresql" in databases
    assert "chatapp.core.layers.RedisChannelLayer" in layers
    assert redirect == "True"
    assert proxy_header == "('HTTP_X_FORWARDED_PROTO', 'https')"
    subnet = compose()["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert interpolate(subnet, {}) in networks


def test_the_model_settings_reach_the_app_as_the_operator_gives_them():
    names = ("LLAMA_MODELS", "LLAMA_MODEL_CONTEXT", "LLAMA_IMAGE_MODELS")
    without_compose = load_settings(clean_env(**OPERATOR_ENV), *names)
    unset = load_settings(clean_env(**app_env()), *names)
    assert unset.returncode == 0, unset.stderr
    assert unset.stdout == without_compose.stdout  # unset in .env: the settings' own defaults
    own_server = app_env(
        LLAMA_MODELS="qwen2.5:32b,llava:13b",
        LLAMA_MODEL_CONTEXT="qwen2.5:32b=32768",
        LLAMA_IMAGE_MODELS="llava:13b",
    )
    given = load_settings(clean_env(**own_server), *names)
    assert given.stdout.splitlines() == [
        "['qwen2.5:32b', 'llava:13b']",
        "{'qwen2.5:32b': 32768}",
        "['llava:13b']",
    ]
    # LLAMA_IMAGE_MODELS= in .env: no model sees images (unset: the Llama 4 ones do)
    empty = load_settings(clean_env(**app_env(LLAMA_IMAGE_MODELS="")), "LLAMA_IMAGE_MODELS")
    assert empty.stdout == "[]\n"


def test_every_variable_the_stack_sets_is_documented():
    documented = documented_variables()
    for name in app_env():
        assert name in documented, f"{name} is missing from docs/configuration.md"
    used = re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text())
    for name in set(used):
        assert name in documented, f"{name} is missing from docs/configuration.md"


def test_images_are_pinned_and_mounted_files_exist():
    app_image = compose()["services"]["app"]["image"]
    for name, service in compose()["services"].items():
        if "build" in service or service["image"] == app_image:  # built here
            continue
        image = interpolate(service["image"], {})
        assert re.search(r":v?\d+\.\d+", image), f"{name}: {image}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_the_proxy_publishes_nginx_which_forwards_to_the_replicas():
    proxy = compose()["services"]["proxy"]
    (published,) = proxy["ports"]
    assert published.endswith(":80")
    conf = (ROOT / "deploy/nginx.conf").read_text()
    assert "listen 80;" in conf
    assert "set $app http://app:8000;" in conf
    assert re.search(r"location = /metrics \{\s*return 404;", conf)
    assert re.search(r"location = /readyz \{\s*return 404;", conf)


def test_nginx_upgrades_websockets_and_forwards_the_client():
    conf = (ROOT / "deploy/nginx.conf").read_text()
    blocks = dict(re.findall(r"location (\S+) \{(.*?)\n    \}", conf, re.S))
    websocket, pages = blocks["/ws/"], blocks["/"]
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket
    assert "proxy_set_header Connection $connection_upgrade;" in websocket
    assert "proxy_read_timeout 1h;" in websocket
    for block in (websocket, pages):
        # A location's own proxy_set_header drops the server's: each must carry all of them.
        for header in ("Host $http_host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-ID"):
            assert f"proxy_set_header {header}" in block


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_configuration(tmp_path):
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; include {ROOT}/deploy/nginx.conf; }}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_every_replica():
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [
        {"names": ["app"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    ]
    assert job["job_name"] == "llama-team-chat"


def dashboard() -> dict:
    return json.loads((ROOT / "deploy/grafana/dashboards/llama-team-chat.json").read_text())


def expressions() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


def test_the_dashboard_shows_every_chat_metric_and_only_real_ones():
    defined = {
        m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")
    }
    used = set()
    for expr in expressions():
        for name in re.findall(r"\b(chat_[a-z_]+)", expr):
            used.add(re.sub(r"_(bucket|total|sum|count)$", "", name))
    assert used == defined
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_is_provisioned_with_its_data_source():
    board = dashboard()
    assert board["uid"] == "llama-team-chat"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["job"]["current"]["value"] == "llama-team-chat"
    for expr in expressions():
        assert 'job="$job"' in expr
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/llama-team-chat.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def test_it_works_with_compose_v1_and_v2():
    """No top-level `name:` (v2 only); the project name comes from -p or the folder."""
    assert set(compose()) <= {"services", "networks", "volumes"}
    if shutil.which("docker-compose"):
        env = clean_env(**OPERATOR_ENV, PATH="/usr/bin:/bin")
        result = subprocess.run(
            ["docker-compose", "-p", "check", "--profile", "demo", "config", "--services"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert set(result.stdout.split()) >= {*CORE, "simulator"}


def test_the_demo_profile_runs_the_simulator_from_its_own_image():
    simulator = compose()["services"]["simulator"]
    assert simulator["profiles"] == ["demo"]
    assert simulator["build"]["dockerfile"] == "deploy/simulator.Dockerfile"
    assert "simulator" not in str(compose()["services"]["app"]["depends_on"])
    dockerfile = (ROOT / "deploy/simulator.Dockerfile").read_text()
    assert "-r requirements/demo.txt" in dockerfile
    assert "COPY llama_simulator " in dockerfile


def test_the_compose_subnet_is_a_network():
    subnet = compose()["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_network(interpolate(subnet, {})).is_private


def test_replicas_share_the_uploads_volume_and_nginx_lets_attachments_through():
    app = compose()["services"]["app"]
    assert "media:/data/media" in app["volumes"]
    assert "media" in compose()["volumes"]
    conf = (ROOT / "deploy/nginx.conf").read_text()
    uploads = conf.split("location = /api/uploads/ {", 1)[1].split("}", 1)[0]
    assert "client_max_body_size 12m;" in uploads
    assert "proxy_pass $app;" in uploads


def test_nginx_lets_through_every_body_the_app_takes():
    """The app answers a body over its limit with its own JSON error (413 on /v1); nginx
    refusing a smaller one would answer in HTML a request the app would have served."""
    from django.conf import settings

    from chatapp.core.bodies import v1_body_limit

    conf = (ROOT / "deploy/nginx.conf").read_text()
    (megabytes,) = re.findall(r"^    client_max_body_size (\d+)m;$", conf, re.MULTILINE)
    assert int(megabytes) * 1024 * 1024 > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # /v1 takes images inline, so larger bodies.
    (megabytes,) = re.findall(r"client_max_body_size (\d+)m;", nginx_location("/v1/"))
    assert int(megabytes) * 1024 * 1024 >= v1_body_limit()


def nginx_location(prefix: str) -> str:
    conf = (ROOT / "deploy/nginx.conf").read_text()
    return conf.split(f"location {prefix} {{", 1)[1].split("}", 1)[0]


def test_nginx_waits_for_a_whole_v1_answer_as_long_as_the_app_may_take():
    """A /v1 answer asked for without streaming sends nothing until it is complete."""
    from django.conf import settings

    v1 = nginx_location("/v1/")
    (minutes,) = re.findall(r"proxy_read_timeout (\d+)m;", v1)
    assert int(minutes) * 60 > settings.LLAMA_TIMEOUTS["total_timeout"]
    # A location with headers of its own inherits none: the same as every other page's.
    headers = {line.strip() for line in v1.splitlines() if "proxy_set_header" in line}
    assert headers == {
        line.strip() for line in nginx_location("/").splitlines() if "proxy_set_header" in line
    }


def test_the_purge_runs_every_hour_from_the_app_image_with_its_settings_and_files():
    services = compose()["services"]
    purge, app = services["purge"], services["app"]
    assert purge["image"] == app["image"] and "build" not in purge
    loop = purge["command"][-1]
    assert purge["command"][:2] == ["sh", "-c"]
    assert "while :" in loop and "python manage.py purge_expired" in loop and "sleep 3600" in loop
    assert purge["environment"] == app["environment"]  # the same database and storage
    assert "media:/data/media" in purge["volumes"]  # deleting a conversation deletes its files
    assert purge["restart"] == "unless-stopped"
    assert purge["healthcheck"] == {"disable": True}  # no web server to probe here
    assert purge["depends_on"] == {"app": {"condition": "service_healthy"}}  # migrated first
    assert "ports" not in purge and "profiles" not in purge


def test_the_app_is_given_the_time_its_supervisor_takes_to_stop():
    """Docker's default is 10 s, then SIGKILL to everything in the container: a server process
    whose stop took its 8 s would be killed with the supervisor before the supervisor ended
    what it left streaming (its answers then wait for another replica's reaper), and a slow
    stop never reached the supervisor's own SIGKILL at STOP_SECONDS."""
    grace = compose()["services"]["app"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace), grace
    assert int(grace[:-1]) >= supervisor.STOP_SECONDS + supervisor.ENDED_SECONDS
