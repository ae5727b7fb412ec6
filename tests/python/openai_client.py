"""Drives clawgate's OpenAI-compatible API with the official openai package.

Usage: openai_client.py BASE_URL API_KEY. Prints one JSON object with what
each call returned, for the Rust integration test to check.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=10)
out = {}

reply = client.chat.completions.create(
    model="clawgate:main",
    messages=[{"role": "user", "content": "hello from python"}],
)
out["plain"] = {
    "content": reply.choices[0].message.content,
    "finish_reason": reply.choices[0].finish_reason,
    "total_tokens": reply.usage.total_tokens,
    "object": reply.object,
}

pieces = []
finish = None
for chunk in client.chat.completions.create(
    model="main",
    messages=[
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "streaming works too"},
    ],
    stream=True,
):
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
out["stream"] = {"content": "".join(pieces), "chunks": len(pieces), "finish_reason": finish}

out["models"] = [m.id for m in client.models.list().data]

client.chat.completions.create(
    model="main", messages=[{"role": "user", "content": "remember alice"}], user="alice"
)

try:
    client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    out["missing_model"] = None
except openai.NotFoundError as e:
    out["missing_model"] = e.status_code

try:
    OpenAI(base_url=base_url, api_key="wrong-key", max_retries=0).models.list()
    out["bad_key"] = None
except openai.AuthenticationError as e:
    out["bad_key"] = e.status_code

print(json.dumps(out))
