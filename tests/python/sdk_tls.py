"""Drives the generated Python client against a gateway serving wss://
with a self-signed certificate: the pinned certificate is accepted, a
wrong pin is refused before anything is sent, and without a pin the
usual verification refuses the certificate.

Usage: python3 tests/python/sdk_tls.py <wss-url> <token> <sha256-fingerprint>"""

import asyncio
import ssl
import sys
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))

from clawgate_client import Client, ClawgateError  # noqa: E402


def colons(fingerprint: str) -> str:
    hex_digits = fingerprint.replace(":", "").upper()
    return ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))


async def main(url: str, token: str, pin: str) -> None:
    # The right pin: the self-signed certificate is accepted.
    client = Client(url, token=token, tls_fingerprint=pin, reconnect=False)
    await client.connect()
    health = await client.health()
    assert health.state == "ready", health
    await client.close()
    print("pinned ok", flush=True)

    # A wrong pin (its last hex digit flipped): refused, and nothing sent.
    wrong = pin[:-1] + format(int(pin[-1], 16) ^ 1, "x")
    sent: list[str] = []
    send = websockets.WebSocketClientProtocol.send

    async def spy(self, message):
        sent.append(message)
        await send(self, message)

    websockets.WebSocketClientProtocol.send = spy
    try:
        await Client(url, token=token, tls_fingerprint=wrong).connect()
        raise AssertionError("expected the wrong pin to be refused")
    except ClawgateError as e:
        assert e.code == 0, e.code
        expected = f"the gateway's TLS certificate is {colons(pin)}, not the pinned {colons(wrong)}"
        assert str(e) == expected, str(e)
    finally:
        websockets.WebSocketClientProtocol.send = send
    assert sent == [], sent
    print("wrong pin refused", flush=True)

    # No pin: the usual verification refuses a self-signed certificate.
    unpinned = Client(url, token=token, reconnect=False)
    try:
        await unpinned.connect()
        raise AssertionError("expected the self-signed certificate to be refused")
    except ssl.SSLCertVerificationError:
        pass
    print("unpinned refused", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
