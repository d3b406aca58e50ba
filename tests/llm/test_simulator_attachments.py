"""The simulator reads images and document blocks as the real API would, and says what arrived;
Meta's and OpenAI's SDKs send them in the shapes the chat uses."""

import base64

import llama_api_client
import openai
import pytest
from llama_api_client import LlamaAPIClient

from llama_simulator.attachments import received
from tests.uploads.files import image_bytes

from .conftest import KEY, MODEL

TEXT_ONLY_MODEL = "Llama-3.3-70B-Instruct"
REPORT = '<document name="report.pdf" pages="2">\n[Page 1]\nRevenue grew\n</document>'


def data_url(width: int, height: int, fmt: str = "PNG") -> str:
    encoded = base64.b64encode(image_bytes(width, height, fmt)).decode()
    return f"data:image/{fmt.lower()};base64,{encoded}"


def question(*images: str, text: str = "What do these show?", documents=(REPORT,)) -> list:
    parts = [{"type": "text", "text": block} for block in documents]
    parts.append({"type": "text", "text": text})
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return [{"role": "user", "content": parts}]


RECEIVED = "Received 2 images (64×48, 30×20) and 1 document: report.pdf (2 pages)"


def test_llama_sdk_sends_images_and_documents(sim):
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        response = client.chat.completions.create(
            model=MODEL, messages=question(data_url(64, 48), data_url(30, 20, "JPEG"))
        )
    text = response.completion_message.content.text
    assert RECEIVED in text
    assert "You asked: *What do these show?*" in text  # the document is not the question


def test_openai_sdk_streams_with_images_and_documents(sim):
    with openai.OpenAI(api_key=KEY, base_url=sim.openai_url, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=question(data_url(64, 48), data_url(30, 20, "WEBP")),
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert RECEIVED in text


def test_images_in_earlier_turns_are_counted_too(sim):
    messages = [
        *question(data_url(10, 10), documents=()),
        {"role": "assistant", "content": "A square."},
        *question(data_url(20, 10), documents=()),
    ]
    with openai.OpenAI(api_key=KEY, base_url=sim.openai_url, max_retries=0) as client:
        reply = client.chat.completions.create(model=MODEL, messages=messages)
    assert "Received 2 images (10×10, 20×10)" in reply.choices[0].message.content


def test_text_only_model_refuses_images(sim):
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        with pytest.raises(llama_api_client.BadRequestError, match="does not accept images"):
            client.chat.completions.create(model=TEXT_ONLY_MODEL, messages=question(data_url(8, 8)))


def test_an_image_given_by_its_url_is_taken(sim):
    """llama-api-client's MessageImageContentItemParam: "Either a URL of the image or the
    base64 encoded image data". The simulator fetches nothing: it names the URL."""
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        response = client.chat.completions.create(
            model=MODEL, messages=question("https://example.com/cat.png", documents=())
        )
    assert (
        "Received 1 image (https://example.com/cat.png)" in response.completion_message.content.text
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/cat.png",
        "data:image/png;base64,bm90IGFuIGltYWdl",
        "data:image/png;base64,%%%",
    ],
)
def test_unreadable_image_is_a_400(sim, url):
    with openai.OpenAI(api_key=KEY, base_url=sim.openai_url, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match="image_url"):
            client.chat.completions.create(model=MODEL, messages=question(url))


def test_a_one_page_document_is_named_with_one_page():
    block = '<document name="memo.pdf" pages="1">\n[Page 1]\nHello\n</document>'
    found = received([{"role": "user", "content": [{"type": "text", "text": block}]}])
    assert found.summary() == "Received 1 document: memo.pdf (1 page)"
