import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatapp.llm.limits import KNOWN_MODELS, count_message_tokens
from llama_simulator import run_simulator
from llama_simulator.answers import TITLE_REQUEST
from llama_simulator.models import MODELS, count_prompt_tokens
from tests.support.polling import wait_for
from tests.support.ports import free_port, wait_for_port

from .conftest import KEY, MODEL, user

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def api(sim):
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10) as client:
        yield client


def chat(api, prefix="/v1", text="hello", headers=None, **body):
    payload = {"model": MODEL, "messages": user(text), **body}
    return api.post(f"{prefix}/chat/completions", json=payload, headers=headers or {})


def sse_data(response: httpx.Response) -> list[str]:
    return [
        line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")
    ]


def native_text(response: httpx.Response) -> str:
    events = [json.loads(data)["event"] for data in sse_data(response)]
    return "".join(event["delta"]["text"] for event in events)


def test_native_stream_has_start_progress_complete_and_metrics_events(api):
    response = chat(api, stream=True)

    assert response.headers["content-type"] == "text/event-stream"
    chunks = [json.loads(data) for data in sse_data(response)]
    types = [chunk["event"]["event_type"] for chunk in chunks]
    assert types[0] == "start" and types[-2:] == ["complete", "metrics"]
    assert set(types[1:-2]) == {"progress"}
    assert chunks[-2]["event"]["stop_reason"] == "stop"
    metrics = {m["metric"]: m["value"] for m in chunks[-1]["event"]["metrics"]}
    assert set(metrics) == {"num_prompt_tokens", "num_completion_tokens", "num_total_tokens"}
    assert (
        metrics["num_total_tokens"]
        == metrics["num_prompt_tokens"] + metrics["num_completion_tokens"]
    )
    assert "[DONE]" not in response.text


def test_openai_stream_ends_with_done_and_usage_only_on_request(api):
    plain = chat(api, "/compat/v1", stream=True)
    with_usage = chat(api, "/compat/v1", stream=True, stream_options={"include_usage": True})

    assert sse_data(plain)[-1] == "[DONE]"
    assert not any('"usage"' in data for data in sse_data(plain))
    usage_chunk = json.loads(sse_data(with_usage)[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] > 0
    finish_chunk = json.loads(sse_data(with_usage)[-3])
    assert finish_chunk["choices"][0]["finish_reason"] == "stop"


def stream(api, text: str):
    body = {"model": MODEL, "messages": user(text), "stream": True}
    return api.stream("POST", "/v1/chat/completions", json=body)


def test_a_client_gone_during_the_first_token_delay_ends_its_stream_before_that_token(api, sim):
    with stream(api, "hi [sim:pace ttft=60]") as response:
        assert response.status_code == 200
        wait_for(lambda: sim.active_streams == 1, "the stream to start")

    wait_for(lambda: sim.active_streams == 0, "the stream to end", seconds=15)


def test_ending_the_streams_ends_a_stall_whose_client_stays(api, sim):
    with stream(api, "hi [sim:fault=stall]") as response:
        wait_for(lambda: sim.active_streams == 1, "the stream to start")
        sim.end_streams()
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()  # the stream ends unfinished, as a cut does

    assert sim.active_streams == 0


def test_answer_is_deterministic_markdown_that_restates_the_question(api):
    first = chat(api, text="How do I reverse a list?").json()
    second = chat(api, text="How do I reverse a list?").json()

    text = first["completion_message"]["content"]["text"]
    assert text == second["completion_message"]["content"]["text"]
    assert "How do I reverse a list?" in text
    assert "\n- " in text and "```python" in text


def test_directives_are_stripped_from_the_answer(api):
    text = chat(api, text="hello [sim:pace tps=900]").json()["completion_message"]["content"][
        "text"
    ]

    assert "hello" in text and "[sim:" not in text


def test_long_directive_gives_exactly_that_many_tokens(api):
    response = chat(api, "/compat/v1", text="[sim:long tokens=700]")

    assert response.json()["usage"]["completion_tokens"] == 700


def test_streamed_text_equals_the_whole_reply(api):
    streamed = native_text(chat(api, text="same question", stream=True))
    whole = chat(api, text="same question").json()["completion_message"]["content"]["text"]

    assert streamed == whole


def test_stamp_starts_every_streamed_chunk_with_its_send_time(api):
    before = time.time()
    response = chat(api, text="Stamped [sim:stamp] [sim:long tokens=5]", stream=True)
    events = [json.loads(data)["event"] for data in sse_data(response)]
    texts = [e["delta"]["text"] for e in events if e["event_type"] == "progress"]
    stamps = [re.match(r"\u27e6([0-9.]+)\u27e7", text) for text in texts]
    assert texts and all(stamps)
    sent = [float(stamp.group(1)) for stamp in stamps]
    assert before <= sent[0] and sent == sorted(sent) and sent[-1] <= time.time()
    unstamped = "".join(text[stamp.end() :] for text, stamp in zip(texts, stamps, strict=True))
    whole = chat(api, text="Stamped [sim:stamp] [sim:long tokens=5]").json()
    assert unstamped == whole["completion_message"]["content"]["text"]


def test_every_reply_has_a_request_id_and_rate_limit_headers(api):
    response = chat(api)

    assert response.headers["x-request-id"].startswith("req-")
    assert response.json()["id"] == response.headers["x-request-id"]
    for name in ("requests", "tokens"):
        assert int(response.headers[f"x-ratelimit-limit-{name}"]) > 0
        assert int(response.headers[f"x-ratelimit-remaining-{name}"]) >= 0


@pytest.mark.parametrize("prefix", ["/v1", "/compat/v1"])
def test_a_rate_limited_reply_says_the_limits_with_no_request_left(api, prefix):
    """Meta's API tells its limits on every chat completion reply, the 429 that refuses one
    too (a title request's as well)."""
    title = [{"role": "system", "content": f"{TITLE_REQUEST}."}]
    answer = chat(api, prefix, text="[sim:fault=429]")
    title_answer = api.post(
        f"{prefix}/chat/completions",
        json={"model": MODEL, "messages": title + user("[sim:title_fault=429] Bread?")},
    )

    for response in (answer, title_answer):
        assert response.status_code == 429
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        for name in ("requests", "tokens"):
            assert int(response.headers[f"x-ratelimit-limit-{name}"]) > 0
        assert int(response.headers["x-ratelimit-remaining-tokens"]) >= 0


def test_missing_or_wrong_key_is_401_in_each_protocols_error_shape(sim):
    with httpx.Client(base_url=sim.base_url) as anonymous:
        native = chat(anonymous)
        compat = chat(anonymous, "/compat/v1", headers={"Authorization": "Bearer nope"})

    assert native.status_code == 401
    assert native.json() == {
        "title": "Unauthorized",
        "detail": native.json()["detail"],
        "status": 401,
    }
    assert compat.status_code == 401
    assert compat.json()["error"]["code"] == "invalid_api_key"


def test_without_a_configured_key_any_key_but_bad_key_is_accepted(sim):
    sim.app.api_key = None
    with httpx.Client(base_url=sim.base_url) as client:
        good = client.get("/v1/models", headers={"Authorization": "Bearer anything"})
        bad = client.get("/v1/models", headers={"Authorization": "Bearer bad-key"})

    assert (good.status_code, bad.status_code) == (200, 401)


@pytest.mark.parametrize(
    "prefix, body, status",
    [
        ("/v1", {"temperature": 1.5}, 400),
        ("/compat/v1", {"temperature": 1.5}, 200),
        ("/v1", {"top_p": 2}, 400),
        ("/v1", {"max_completion_tokens": 0}, 400),
        ("/compat/v1", {"max_tokens": -1}, 400),
        ("/v1", {"model": "Llama-0-Unknown"}, 404),
    ],
)
def test_parameters_are_validated_like_the_real_api(api, prefix, body, status):
    assert chat(api, prefix, **body).status_code == status


def test_invalid_json_is_400(api):
    response = api.post("/v1/chat/completions", content=b"{not json")

    assert response.status_code == 400


def test_unknown_directive_is_a_400_that_names_it(api):
    response = chat(api, text="[sim:fault=explode]")

    assert response.status_code == 400
    assert "explode" in response.json()["detail"]


def test_fault_header_works_like_a_message_directive(api):
    response = chat(api, headers={"X-Sim-Fault": "fault=429 retry_after=2"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


def test_times_fails_only_the_first_identical_requests(api):
    statuses = [chat(api, text="[sim:fault=503 times=2]").status_code for _ in range(3)]
    other = chat(api, text="another [sim:fault=503 times=2]").status_code

    assert statuses == [503, 503, 200]
    assert other == 503


def test_cut_drops_the_connection_after_n_tokens(api):
    with pytest.raises(httpx.RemoteProtocolError):
        chat(api, text="hi [sim:fault=cut after=2]", stream=True)


def test_models_and_a_single_model(api):
    listing = api.get("/v1/models").json()

    assert listing["object"] == "list"
    assert MODEL in [model["id"] for model in listing["data"]]
    assert api.get(f"/compat/v1/models/{MODEL}").json()["id"] == MODEL
    assert api.get("/v1/models/nope").status_code == 404


def test_requests_endpoint_lists_bodies_newest_last_and_clears(api):
    chat(api, text="first")
    chat(api, text="second", temperature=0.2)

    bodies = api.get("/_sim/requests").json()
    assert [body["messages"][0]["content"] for body in bodies] == ["first", "second"]
    assert bodies[-1]["temperature"] == 0.2
    assert api.delete("/_sim/requests").status_code == 200
    assert api.get("/_sim/requests").json() == []


def test_unknown_path_is_404(api):
    assert api.get("/v2/models").status_code == 404
    assert api.get("/v1/embeddings").status_code == 404


def test_run_simulator_serves_on_its_own_port_and_stops():
    with run_simulator(api_key="k") as sim:
        response = httpx.get(sim.native_url + "/models", headers={"Authorization": "Bearer k"})
        port = int(sim.base_url.rsplit(":", 1)[1])
    assert response.status_code == 200
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(
    "launcher",
    [["manage.py", "llama_simulator"], ["-m", "llama_simulator"]],
    ids=["manage.py", "python -m"],
)
def test_command_line_serves_both_protocols(launcher):
    port = free_port()
    command = [sys.executable, *launcher, "--port", str(port)]
    command += ["--tokens-per-second", "1000", "--first-token-delay", "0"]
    root = Path(__file__).resolve().parents[2]
    env = {"SECRET_KEY": "simulator-test-only", **os.environ}  # settings insist when DEBUG is off
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_listening(port, process)
        headers = {"Authorization": "Bearer any-key"}
        native = httpx.post(
            base + "/v1/chat/completions",
            json={"model": MODEL, "messages": user("hi")},
            headers=headers,
        )
        compat = httpx.get(base + "/compat/v1/models", headers=headers)
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert native.status_code == 200
    assert "hi" in native.json()["completion_message"]["content"]["text"]
    assert compat.status_code == 200


def _wait_until_listening(port: int, process: subprocess.Popen) -> None:
    try:
        wait_for_port(port, process, "the simulator command")
    except RuntimeError:
        raise AssertionError(process.stderr.read().decode()) from None


def test_serves_the_models_the_client_knows_and_counts_prompts_alike():
    assert MODELS == KNOWN_MODELS
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hello there, simulator"}]},
        {"role": "assistant", "content": None, "tool_calls": [call] * 3},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert count_prompt_tokens(messages) == count_message_tokens(messages) > 0
    assert count_message_tokens(messages[2:3]) == (3 * 9 + 3) // 4 + 4  # 9 characters a call


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("How do I file taxes in Spain?", "File Taxes Spain"),
        ("东京 كَتَبَ 🦙 tell me about llamas", "东京 كَتَبَ Tell About Llamas"),
        ("Où est la gare? नमस्ते दुनिया", "Où Est La Gare नमस्ते"),
        ("🦙🦙", "New Chat"),
    ],
)
def test_a_title_keeps_each_word_whole_in_any_script(question, title):
    """Accents and vowel signs are part of their word, as a model writes them."""
    from llama_simulator.answers import compose_title

    assert compose_title(f"Question:\n{question}\n\nAnswer:\nSure.") == title
