from chatapp.chat.history import build_history, context_budget, title_from
from chatapp.llm import MODEL_CONTEXT_LIMITS, count_message_tokens

MODEL = "Llama-3.3-70B-Instruct"


def turns(count: int, words: int = 50) -> list[dict]:
    roles = ("user", "assistant")
    return [{"role": roles[n % 2], "content": f"turn {n} " + "word " * words} for n in range(count)]


def test_everything_is_sent_when_it_fits():
    history = turns(5)
    sent = build_history("Be kind.", history, MODEL, 1000)
    assert sent.messages == [{"role": "system", "content": "Be kind."}, *history]
    assert sent.tokens == count_message_tokens(sent.messages)


def test_no_system_message_without_a_prompt():
    assert build_history("  ", turns(1), MODEL, None).messages[0]["role"] == "user"


def test_oldest_turns_go_first_and_the_prompt_stays(monkeypatch):
    monkeypatch.setitem(MODEL_CONTEXT_LIMITS, MODEL, 1000)
    history = turns(21)
    history_sent = build_history("System rules.", history, MODEL, 200)
    sent = history_sent.messages
    assert sent[0] == {"role": "system", "content": "System rules."}
    assert sent[-1] == history[-1]
    assert sent[1]["role"] == "user"
    assert sent[1:] == history[len(history) - len(sent) + 1 :]
    assert count_message_tokens(sent) <= context_budget(MODEL, 200)
    assert history_sent.tokens == count_message_tokens(sent)
    assert len(sent) < len(history)


def test_the_last_question_is_sent_even_when_too_long(monkeypatch):
    monkeypatch.setitem(MODEL_CONTEXT_LIMITS, MODEL, 100)
    history = turns(3, words=500)
    sent = build_history("", history, MODEL, 10)
    assert sent.messages == [history[-1]]
    assert sent.tokens == count_message_tokens([history[-1]])


def test_unknown_models_get_a_small_window():
    assert context_budget("my-local-model", None) == 8192 - 4096
    assert context_budget(MODEL, 2048) == MODEL_CONTEXT_LIMITS[MODEL] - 2048


def test_an_unknown_model_gets_the_window_the_operator_gave(settings):
    history = turns(40, words=2000)  # about 20,000 tokens
    assert build_history("", history, "my-local-model", 2048).dropped > 0
    settings.LLAMA_MODEL_CONTEXT = {"my-local-model": 131_072}
    sent = build_history("", history, "my-local-model", 2048)
    assert (sent.messages, sent.dropped) == (history, 0)
    assert context_budget("my-local-model", 2048) == 131_072 - 2048


def test_the_operators_window_overrides_a_known_models(settings):
    settings.LLAMA_MODEL_CONTEXT = {MODEL: 1000}
    history = turns(21)
    sent = build_history("", history, MODEL, 200)
    assert sent.dropped > 0
    assert count_message_tokens(sent.messages) <= 1000 - 200
    assert context_budget(MODEL, 200) == 800
    assert context_budget("Llama-3.3-8B-Instruct", 200) == 128_000 - 200


def test_titles():
    assert title_from("  \n How do I   file taxes?\nDetails") == "How do I file taxes?"
    long = title_from("word " * 40)
    assert long.endswith("…") and len(long) <= 61 and "  " not in long
    assert title_from("x" * 100) == "x" * 60 + "…"
    assert title_from("Open \u2067invoice\u2069 for me") == "Open invoice for me"
    assert title_from("\u200b\ufeff\nHow do I file taxes?") == "How do I file taxes?"
    assert title_from("\u3164\u00ad") == "New conversation"
