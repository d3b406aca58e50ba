"""`make run` (scripts/run.py) decides on the offline demo with the settings the app will read:
the environment, then the project's .env."""

import importlib.util

from tests.deploy.files import ROOT

spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
assert spec and spec.loader
run_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_script)


def test_a_key_in_the_env_file_is_the_key_make_run_sees(tmp_path, monkeypatch):
    """A key kept in .env is the app's key: make run does not start the simulator over it."""
    monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    monkeypatch.setenv("LLAMA_API_PROTOCOL", "openai")
    (tmp_path / ".env").write_text(
        "LLAMA_API_KEY=key-from-the-file\n"
        "LLAMA_API_BASE_URL=http://vllm.internal:8000/v1\n"
        "LLAMA_API_PROTOCOL=llama\n"
    )
    env = run_script.environment(tmp_path)
    assert env["LLAMA_API_KEY"] == "key-from-the-file"
    assert env["LLAMA_API_BASE_URL"] == "http://vllm.internal:8000/v1"
    assert env["LLAMA_API_PROTOCOL"] == "openai"  # the environment wins, as in the settings


def test_without_an_env_file_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    assert "LLAMA_API_KEY" not in run_script.environment(tmp_path)
