"""Drives the generated Python client against a live gateway (started by
tests/it/sdk.rs): handshake, typed calls, a typed error, events in order,
and a reconnect after the gateway restarts."""

import asyncio
import sys

from clawgate_client import Client, ClawgateError, models


async def main(url: str, token: str) -> None:
    client = Client(url, token=token, backoff_initial=0.1, backoff_max=0.5)
    states: list[str] = []
    client.on_state(states.append)
    hello = await client.connect()
    assert hello.protocol == 1, hello
    assert "cron.add" in hello.methods

    health = await client.health()
    assert isinstance(health, models.HealthSnapshot) and health.state == "ready", health
    # Readers tolerate fields a newer gateway adds (an additive change);
    # params still refuse a misspelt field before it is sent.
    newer = {**health.model_dump(mode="json", exclude_none=True), "load": 0.5}
    assert models.HealthSnapshot.model_validate(newer).state == "ready"
    try:
        models.ChatParams(message="hi", sesionKey="typo")
        raise AssertionError("expected a validation error")
    except ValueError:
        pass

    seen: list[tuple[int, str, int]] = []
    client.on("agent.message", lambda event, seq: seen.append((seq, event.state, event.runSeq)))
    reply = await client.chat(models.ChatParams(message="one two three", sessionKey="sdk-py"))
    assert isinstance(reply, models.ChatResult)
    assert reply.message.content == "one two three"
    await asyncio.sleep(0.1)
    assert len(seen) >= 2, seen
    for before, after in zip(seen, seen[1:]):
        assert after[0] > before[0], "events arrive in order"
        assert after[2] == before[2] + 1
    assert seen[-1][1] == "final"

    history = await client.sessions_history({"sessionKey": "sdk-py"})
    assert len(history.messages) == 2

    try:
        await client.sessions_history({"sessionKey": "no-such-session"})
        raise AssertionError("expected not_found")
    except ClawgateError as e:
        assert (e.error_name, e.code) == ("not_found", -32008), (e.error_name, e.code)
    try:
        await client.call("status", {"bogus": 1})
        raise AssertionError("expected invalid_params")
    except ClawgateError as e:
        assert e.error_name == "invalid_params"

    print("READY_FOR_RESTART", flush=True)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if "reconnecting" in states and states[-1] == "open":
            break
    again = await client.health()
    assert again.state == "ready"
    await client.close()
    print("OK", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
