"""A local stand-in for Meta's Llama API, for offline demos, tests and benchmarks.

Serves, behind `Authorization: Bearer KEY`:
- the native Llama API under /v1: POST /v1/chat/completions (streaming or not),
  GET /v1/models, GET /v1/models/{id}, POST /v1/moderations;
- the OpenAI-compatible API under /compat/v1: the same routes with OpenAI shapes
  (`max_completion_tokens` or `max_tokens`, temperature 0..2, `data: [DONE]`, usage with
  stream_options.include_usage).
- test helpers: GET /_sim/requests (chat request bodies, newest last), DELETE /_sim/requests
  (forget them and the `times=` counters), GET /_sim/stats ({"active_streams": n}).

Keys: with an api_key configured only that key is accepted; without one any non-empty key
except the literal "bad-key" is accepted. Unknown models get 404, out-of-range parameters 400,
and a prompt plus max tokens beyond the model's 128K window a context-length 400.

Answers are deterministic markdown: the question restated, a list (word count, turn, the
settings that arrived) and a code block. Tokens are words with their leading whitespace,
sent on an absolute schedule: the first after `first_token_delay`, then `tokens_per_second`.
Non-streaming replies arrive after the first-token delay.

Directives ask for behaviour per request, written inside the last user message (stripped from
the answer) or, with the same text, in an `X-Sim-Fault` header (several joined with `;`):

    [sim:fault=401]                   any HTTP status 400..599 as an error reply (404: no model)
    [sim:fault=429 retry_after=1]     with a retry-after header (seconds; retry_after_ms=...)
    [sim:fault=500 times=2]           only the first 2 identical requests fail, then success
    [sim:fault=context_too_long]      a 400 that says the context length was exceeded
    [sim:fault=400 echo_auth pad=290] an error whose detail is 290 dots, then the request's
                                      Authorization header (a careless proxy's echo)
    [sim:fault=stall]                 200 and stream headers, then silence until the client leaves
    [sim:fault=stall_after after=3]   3 tokens, then silence
    [sim:fault=cut after=5]           5 tokens, then the connection drops (no final event)
    [sim:fault=error_after after=2]   2 tokens, then an error event ends the stream (500 if not
                                      streaming)
    [sim:long tokens=5000]            an answer exactly 5000 tokens long (2000 without tokens=)
    [sim:pace tps=450 ttft=0.01]      this request's tokens per second and first-token delay
    [sim:stamp]                       each streamed chunk starts with ⟦<send time, epoch s>⟧
    [sim:flag categories=S1,S10]      moderations: flag this user message (S1 without categories)
    [sim:flag_answer categories=S10 at=20]  moderations: flag the answer once it has 20 tokens
    [sim:flag_image categories=S12]   moderations: flag this user message if it carries an image
    [sim:guard_fault=503]             moderations (and Guard model chats) fail with that status
    [sim:guard_delay=2]               moderations (and Guard model chats) answer after 2 s
    [sim:call=get_weather args=city:Paris]  when the request offers tools: call that tool
                                      (arguments streamed in pieces, stop reason tool_calls);
                                      once a `tool` message is last, answer from its content;
                                      with `tool_choice: "none"`, answer without calling
    [sim:call=a+b rounds=3]           call a and b together in one turn, for 3 turns in a row
    [sim:call=a anyway]               call a even when the request offers no tools
    [sim:call=a same_ids]             call ids numbered per turn: call_0 in every turn
    [sim:call=a long_ids]             call ids of over 300 characters
    [sim:call=a preface]              say "Let me check that. " before calling
    [sim:bad_json]                    with a JSON response_format: an answer cut mid-JSON
    [sim:off_schema]                  with a JSON response_format: JSON that breaks the schema

`response_format` is honoured in both protocols: `json_object` (OpenAI-compatible only, as in
llama-api-client's types) answers a small JSON object, `json_schema` an instance built from the
schema (llama_simulator/structured.py); both pretty-printed and streamed like any answer.

`stall` and `stall_after` are the same fault (`after` defaults to 0 for every stream fault).
`times=N` works with every fault: identical requests (same path, header and body) are counted,
so a client's retries of one request see N failures and then a normal answer.

Start it with `python manage.py llama_simulator --port 8100` (or `python -m llama_simulator`),
or in tests:

    with run_simulator(tokens_per_second=500, first_token_delay=0, api_key="sim-key") as sim:
        sim.native_url, sim.openai_url   # base URLs for the native and OpenAI-compatible APIs
        sim.requests                     # chat request bodies received so far
"""

from .app import Simulator
from .server import RunningSimulator, run_simulator, serve

__all__ = ["RunningSimulator", "Simulator", "run_simulator", "serve"]
