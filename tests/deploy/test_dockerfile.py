"""The Dockerfile parses and runs the right things (docker itself does not run here)."""

import json
import os
import re
import shlex

from tests.deploy.files import ROOT, build_args, dockerfile, stages

PINNED_IMAGE = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$")


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def values(stage, keyword) -> list[str]:
    return [rest for k, rest in stage if k == keyword]


def env_of(stage) -> dict[str, str]:
    env = {}
    for rest in values(stage, "ENV"):
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def test_multi_stage_with_pinned_base_images():
    all_stages = stages()
    assert len(all_stages) >= 2
    names = set()
    for stage in all_stages:
        image, *alias = stage[0][1].split()
        assert image in names or PINNED_IMAGE.match(image), f"unpinned base image {image}"
        if alias:
            names.add(alias[-1])
    assert values(final_stage(), "COPY")
    assert all("--from=" in c for c in values(final_stage(), "COPY")), "runtime copies from build"


def test_runs_as_a_non_root_user():
    (user,) = values(final_stage(), "USER")
    assert user not in ("root", "0")
    assert any(f"--uid {user}" in run for run in values(final_stage(), "RUN"))


def test_entrypoint_serves_daphne_processes_on_the_exposed_port():
    stage = final_stage()
    (entrypoint,) = values(stage, "ENTRYPOINT")
    (cmd,) = values(stage, "CMD")
    assert json.loads(entrypoint) == ["/app/deploy/docker-entrypoint.sh"]
    assert json.loads(cmd) == ["serve"]
    script = ROOT / "deploy/docker-entrypoint.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "manage.py serve" in text and "--proxy-headers" in text and "--processes auto" in text
    assert "migrate_locked" in text
    (exposed,) = values(stage, "EXPOSE")
    assert env_of(stage)["PORT"] == exposed == "8000"


def test_healthcheck_asks_healthz_on_the_port():
    (check,) = values(final_stage(), "HEALTHCHECK")
    options, _, command = check.partition("CMD")
    assert "--timeout=" in options and "--interval=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "PORT" in argv[2]
    compile(argv[2], "healthcheck", "exec")


def test_every_copied_path_exists_and_is_not_ignored():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for stage in stages():
        for rest in values(stage, "COPY"):
            if "--from=" in rest:
                continue
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source.split("/")[0] not in ignored, f"{source} is in .dockerignore"
    for secret in (".env", ".dev_secret_key", ".venv", ".git"):
        assert secret in ignored


def test_the_image_leaves_the_simulator_out():
    build = stages()[0]
    copied = [
        source
        for stage in (build, final_stage())
        for rest in values(stage, "COPY")
        if "--from=" not in rest
        for source in rest.split()[:-1]
    ]
    assert copied and "." not in copied, "copy what the product needs, not the whole context"
    assert not [source for source in copied if source.startswith("llama_simulator")]


def test_the_base_image_is_a_build_argument():
    assert PINNED_IMAGE.match(build_args()["BASE_IMAGE"])
    froms = [rest for keyword, rest in dockerfile() if keyword == "FROM"]
    assert all(rest.startswith("${BASE_IMAGE}") for rest in froms)


def test_dependencies_come_from_the_base_lock_with_hashes():
    (install,) = [r for r in values(stages()[0], "RUN") if "pip install" in r]
    assert "--require-hashes -r requirements/base.txt" in install
    assert "requirements/base.txt ./requirements/base.txt" in values(stages()[0], "COPY")


def test_static_files_are_collected_with_hashed_names_where_the_runtime_looks():
    collect = [r for r in values(stages()[0], "RUN") if "collectstatic" in r]
    assert collect and "STATIC_MANIFEST=1" in collect[0]
    root = re.search(r"STATIC_ROOT=(\S+)", collect[0]).group(1)
    assert env_of(final_stage())["STATIC_ROOT"] == root


def test_dockerfile_has_no_secrets():
    text = " ".join(rest for _, rest in dockerfile())
    assert "LLAMA_API_KEY" not in text
    assert re.findall(r"SECRET_KEY=(\S+)", text) == ["collectstatic-only"]
