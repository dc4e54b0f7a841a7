"""Acceptance: the official `openai` package, unmodified, against a running
Cloister router or `cloister proxy` (OPENAI_BASE_URL, OPENAI_API_KEY,
CLOISTER_MODEL; CLOISTER_SKIP_RATE_LIMIT=1 skips the rate-limit check).

Checks models, chat and completions (stream and not, usage present), and
that the SDK raises its own error types: wrong key -> AuthenticationError,
unknown model -> NotFoundError, over the rate limit -> RateLimitError.
Exits non-zero on the first failure.
"""
import os
import sys

import openai

model = os.environ["CLOISTER_MODEL"]
client = openai.OpenAI(max_retries=0, timeout=120)


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


ids = [m.id for m in client.models.list()]
check(model in ids, f"models.list() names {model}: {ids}")

chat = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
)
check(chat.object == "chat.completion", "chat completion object")
check(chat.choices[0].message.content is not None, "chat answer has content")
check(chat.usage is not None and chat.usage.completion_tokens > 0, f"chat usage {chat.usage}")

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count to three."}],
    max_tokens=8,
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(len(chunks) >= 2, f"chat stream has {len(chunks)} chunks")
check(chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0, "stream include_usage")
check(isinstance(text, str), "streamed text assembles")

completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6)
check(completion.object == "text_completion", "completion object")
check(completion.usage is not None and completion.usage.total_tokens > 0, "completion usage")

pieces = list(client.completions.create(model=model, prompt="The sky is", max_tokens=6, stream=True))
check(len(pieces) >= 1 and pieces[0].object == "text_completion", "completion stream")

try:
    openai.OpenAI(api_key="sk-cloister-not-a-key", max_retries=0).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], max_tokens=1
    )
    check(False, "wrong key raises AuthenticationError")
except openai.AuthenticationError:
    check(True, "wrong key raises AuthenticationError")

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model raises NotFoundError")
except openai.NotFoundError as e:
    check(e.code == "model_not_found", "unknown model raises NotFoundError (model_not_found)")

if os.environ.get("CLOISTER_SKIP_RATE_LIMIT"):
    print("openai SDK acceptance: all passed (rate limit not exercised here)")
    sys.exit(0)

# A burst, so that the bucket cannot refill between requests however slow
# the machine: some of them must be refused with 429.
from concurrent.futures import ThreadPoolExecutor


def one(_):
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
        return None
    except openai.RateLimitError as e:
        return e
    except openai.APIError:
        return None


with ThreadPoolExecutor(max_workers=40) as pool:
    refused = [e for e in pool.map(one, range(40)) if e is not None]
limited = refused[0] if refused else None
check(limited is not None, f"RateLimitError in a burst of 40 ({len(refused)} refused)")
check(limited.response.headers.get("retry-after") is not None, "429 carries Retry-After")
print("openai SDK acceptance: all passed")
