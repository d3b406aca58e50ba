"""The official openai SDK against a live daphne serving the app, the Llama API simulator
upstream: what a script holding a personal key sees, streaming included."""

import base64
import io
import json
import random
import re
import time
from pathlib import Path

import openai
import pytest
from PIL import Image
from pydantic import BaseModel

from tests.browser.conftest import SIMULATOR, serve_app
from tests.openai_api.conftest import MODEL
from tests.support.polling import wait_for

pytestmark = pytest.mark.slow


class Weather(BaseModel):
    city: str


@pytest.fixture(scope="module")
def live(simulators, tmp_path_factory):
    with serve_app(simulators.get(SIMULATOR), tmp_path_factory.mktemp("openai_live")) as server:
        yield server


@pytest.fixture(scope="module")
def key(live) -> str:
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams import actions\n"
        "user = get_user_model().objects.create(username='scripter')\n"
        "team = actions.ensure_personal_team(user)\n"
        "_, secret = actions.create_api_key(user, team, 'live')\n"
        "print(secret)"
    )
    return live.run_python(code).strip()


def client(live, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=live.url + "/v1", max_retries=0)


def usage_rows(live) -> list:
    code = (
        "import json\n"
        "from chatapp.teams.models import TeamUsage\n"
        "rows = TeamUsage.objects.values('api_key_ref', 'requests', 'completion_tokens')\n"
        "print(json.dumps(list(rows)))"
    )
    return json.loads(live.run_python(code))


def test_models_and_a_whole_answer(live, key):
    sdk = client(live, key)
    assert MODEL in [model.id for model in sdk.models.list().data]
    answer = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}]
    )
    assert answer.choices[0].message.content
    assert answer.usage.completion_tokens > 0


def test_a_streamed_answer_arrives_in_pieces_with_usage(live, key):
    before = sum(row["requests"] for row in usage_rows(live))
    stream = client(live, key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "[sim:long tokens=40] Tell me more"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert chunks[-1].usage.completion_tokens == 40
    rows = usage_rows(live)
    assert sum(row["requests"] for row in rows) == before + 1
    assert all(row["api_key_ref"] > 0 for row in rows)


def test_the_sdks_stream_helper_pieces_a_call_together_and_its_result_is_answered(live, key):
    """The SDK's own accumulation of streamed tool calls (`chat.completions.stream`), and the
    function's result sent back as a `tool` message, over HTTP."""
    sdk = client(live, key)
    weather = openai.pydantic_function_tool(Weather, name="get_weather")
    question = {"role": "user", "content": "[sim:call=get_weather args=city:Oslo] And Oslo?"}
    with sdk.chat.completions.stream(model=MODEL, messages=[question], tools=[weather]) as stream:
        called = stream.get_final_completion().choices[0]
    assert called.finish_reason == "tool_calls"
    [call] = called.message.tool_calls
    assert call.function.name == "get_weather"
    assert call.function.parsed_arguments == Weather(city="Oslo")
    result = {"role": "tool", "tool_call_id": call.id, "content": "Snow, -3 °C"}
    answer = sdk.chat.completions.create(
        model=MODEL, messages=[question, called.message.model_dump(), result], tools=[weather]
    )
    assert answer.choices[0].message.content == "The tool answered: Snow, -3 °C"


def test_a_wrong_key_is_refused(live, key):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(live, key + "x").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body["code"] == "invalid_api_key"


def test_pieces_arrive_while_the_answer_is_written_and_a_closed_stream_is_counted(live, key):
    """A slow answer (2 tokens a second, 200 tokens): its first pieces reach the client long
    before its end, and the usage of an answer the client stops reading is still counted."""
    before = sum(row["requests"] for row in usage_rows(live))
    sdk = openai.OpenAI(api_key=key, base_url=live.url + "/v1", max_retries=0, timeout=60)
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "[sim:pace tps=2] [sim:long tokens=200] Go slowly"}],
        stream=True,
    )
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if len(pieces) == 3:
            break  # about 1.5 s in; the whole answer would take 100 s
    stream.close()
    assert len(pieces) == 3
    wait_for(
        lambda: sum(row["requests"] for row in usage_rows(live)) == before + 1,
        "the stopped answer's usage",
    )


def test_a_client_that_gives_up_on_a_whole_answer_is_counted_and_frees_its_place(live, key):
    """Each answer holds one of the person's places (CHAT_MAX_CONCURRENT_GENERATIONS, 3) until
    it ends: a client timing out ends it, and what was read upstream is counted."""
    before = sum(row["requests"] for row in usage_rows(live))
    impatient = openai.OpenAI(api_key=key, base_url=live.url + "/v1", max_retries=0, timeout=1)
    slow = [{"role": "user", "content": "[sim:pace tps=2] [sim:long tokens=200] Go slowly"}]
    for _ in range(3):
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model=MODEL, messages=slow)
    wait_for(
        lambda: sum(row["requests"] for row in usage_rows(live)) == before + 3,
        "the abandoned answers' usage",
    )
    answer = client(live, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Still there?"}]
    )
    assert answer.choices[0].message.content


def test_a_stream_closed_while_its_answer_is_judged_is_counted(live, key):
    """Under answer screening the stream's end waits for Llama Guard (3 s here): a client
    leaving meanwhile still has the answer counted."""
    team_policy = (
        "from chatapp.teams.models import TeamPolicy, Team\n"
        "team = Team.objects.get(personal_owner__username='scripter')\n"
        "TeamPolicy.objects.update_or_create(team=team, defaults={{'safety_output': {!r}}})"
    )
    live.run_python(team_policy.format("flag"))
    try:
        before = sum(row["requests"] for row in usage_rows(live))
        stream = client(live, key).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "[sim:guard_delay=3] [sim:long tokens=5] Hi"}],
            stream=True,
        )
        next(iter(stream))
        time.sleep(1)  # the text is all out by now; Llama Guard has not answered
        stream.close()
        wait_for(
            lambda: sum(row["requests"] for row in usage_rows(live)) == before + 1,
            "the closed stream's usage",
        )
    finally:
        live.run_python(team_policy.format("off"))


def test_a_photo_too_large_for_other_bodies_and_a_stop_sequence(live, key):
    """A body over Django's 2.5 MB, read through daphne; the answer cut before "short"."""
    pixels = random.Random(2).randbytes(1200 * 1000 * 3)
    output = io.BytesIO()
    Image.frombytes("RGB", (1200, 1000), pixels).save(output, "PNG")
    url = "data:image/png;base64," + base64.b64encode(output.getvalue()).decode()
    assert len(url) > 4 * 1024**2
    answer = client(live, key).chat.completions.create(
        model="Llama-4-Scout-17B-16E-Instruct-FP8",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe it"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
        stop=["short"],
    )
    assert answer.choices[0].message.content == "You asked: *Describe it*\n\nHere is a "
    assert answer.choices[0].finish_reason == "stop"


def test_the_api_keys_docs_examples_run_as_written(live, key, tmp_path, monkeypatch):
    """The Python examples in docs/api-keys.md, in order, with only the site's address and
    the key put in: each gets an answer of the documented shape."""
    doc = (Path(__file__).resolve().parents[2] / "docs/api-keys.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", doc, re.M | re.S)
    assert len(blocks) == 2  # the first answer, then one with an image
    source = "\n".join(blocks)
    assert source.count('"https://chat.example.com/v1"') == 1 and source.count('"ltc_…"') == 1
    site, secret = repr(live.url + "/v1"), repr(key)
    blocks = [
        b.replace('"https://chat.example.com/v1"', site).replace('"ltc_…"', secret) for b in blocks
    ]
    image = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(image, "PNG")
    (tmp_path / "chart.png").write_bytes(image.getvalue())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    answers = []
    for block in blocks:  # the second uses the first's client
        exec(block, namespace)
        answers.append(namespace.pop("answer"))
    for answer in answers:
        assert answer.object == "chat.completion"
        assert answer.choices[0].message.role == "assistant"
        assert answer.choices[0].message.content
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage.total_tokens > 0
