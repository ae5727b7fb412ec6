"""The Python client against a gateway that requires a client certificate
(gateway.tls.caPath): with one (its ssl context), pinned, health answers;
without, the handshake is refused.

Usage: python3 tests/python/sdk_mtls.py <wss-url> <token> <fingerprint> <cert.pem> <key.pem>"""

import asyncio
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))

from clawgate_client import Client  # noqa: E402


def context(cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    # The pin does the verifying; the context carries the certificate.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


async def main(url: str, token: str, pin: str, cert: str, key: str) -> None:
    client = Client(url, token=token, tls_fingerprint=pin, ssl=context(cert, key), reconnect=False)
    await client.connect()
    assert (await client.health()).state == "ready"
    await client.close()
    try:
        refused = Client(url, token=token, tls_fingerprint=pin, ssl=context(), reconnect=False)
        await refused.connect()
        await refused.health()
    except Exception:
        pass
    else:
        raise AssertionError("connected without a client certificate")
    print("OK")


asyncio.run(main(*sys.argv[1:6]))
