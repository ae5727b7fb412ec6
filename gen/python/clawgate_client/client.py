"""The clawgate asyncio client: handshake, typed calls and events,
request timeouts, reconnect with backoff. Generated tables (methods,
events, error codes) live in _generated.py, models in models.py."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import ssl
from typing import Any, Callable

import websockets
from pydantic import BaseModel

from . import models
from ._generated import ERROR_CODES, EVENTS, METHODS, PROTOCOL_VERSION, GeneratedMethods

ERROR_NAMES = {code: name for name, code in ERROR_CODES.items()}


class ClawgateError(Exception):
    """An error the gateway returned (its protocol code), or one the client raised (code 0)."""

    def __init__(self, code: int, message: str, data: Any = None, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.error_name = ERROR_NAMES.get(code, "unknown")
        self.data = data
        self.retryable = retryable


def _fingerprint(text: str) -> str:
    """A SHA-256 fingerprint ("AB:CD:…" or "abcd…") as "AB:CD:…"."""
    hex_digits = text.strip().removeprefix("sha256:").removeprefix("SHA256:").replace(":", "").upper()
    if len(hex_digits) != 64 or any(c not in "0123456789ABCDEF" for c in hex_digits):
        raise ValueError(f"tls_fingerprint: not a SHA-256 fingerprint (64 hex digits): {text}")
    return ":".join(hex_digits[i : i + 2] for i in range(0, 64, 2))


def _pinning_context() -> ssl.SSLContext:
    """TLS without certificate verification: the pin replaces it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Client(GeneratedMethods):
    """A connection to a clawgate gateway. Every RPC is a method
    (``cron.add`` is ``cron_add``); ``call`` is the untyped way in.

    ``tls_fingerprint`` pins the gateway's TLS certificate (the SHA-256 of
    its DER, ``AB:CD:…`` or ``abcd…``): only that certificate is accepted,
    self-signed or not, and ``ssl`` verification is not needed. ``ssl``
    is a context for ``wss://`` (a custom CA, say); with a pin too, the
    certificate must pass both."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        password: str | None = None,
        role: str = "operator",
        scopes: list[str] | None = None,
        client_name: str = "clawgate-sdk-py",
        request_timeout: float = 30.0,
        reconnect: bool = True,
        backoff_initial: float = 0.25,
        backoff_max: float = 10.0,
        tls_fingerprint: str | None = None,
        ssl: ssl.SSLContext | None = None,
    ):
        self.url = url
        self._pin = _fingerprint(tls_fingerprint) if tls_fingerprint is not None else None
        if self._pin is not None and not url.lower().startswith("wss://"):
            raise ValueError(f"tls_fingerprint needs a wss:// url, not {url}")
        self._ssl = _pinning_context() if self._pin is not None and ssl is None else ssl
        self._auth = {"token": token} if token is not None else ({"password": password} if password is not None else None)
        self._role = role
        self._scopes = scopes
        self._client_name = client_name
        self.request_timeout = request_timeout
        self.reconnect = reconnect
        self._backoff = (backoff_initial, backoff_max)
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._state_handlers: list[Callable[[str], Any]] = []
        self._socket: Any = None
        self._reader: asyncio.Task | None = None
        self._closed = False
        self.hello: models.ConnectResult | None = None

    async def connect(self) -> models.ConnectResult:
        """Opens the connection and completes the handshake."""
        self._closed = False
        return await self._open()

    async def _open(self) -> models.ConnectResult:
        self._set_state("connecting")
        tls = {} if self._ssl is None else {"ssl": self._ssl}
        socket = await websockets.connect(self.url, max_size=None, **tls)
        if self._pin is not None:
            # Before anything is sent: the credential goes to the pinned server only.
            der = socket.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            actual = _fingerprint(hashlib.sha256(der).hexdigest())
            if actual != self._pin:
                socket.transport.abort()
                await socket.wait_closed()
                raise ClawgateError(0, f"the gateway's TLS certificate is {actual}, not the pinned {self._pin}")
        self._socket = socket
        self._reader = asyncio.create_task(self._read(self._socket))
        params: dict[str, Any] = {
            "protocol": {"min": PROTOCOL_VERSION, "max": PROTOCOL_VERSION},
            "client": {"name": self._client_name, "version": "1"},
            "role": self._role,
        }
        if self._auth is not None:
            params["auth"] = self._auth
        if self._scopes is not None:
            params["scopes"] = self._scopes
        try:
            hello = await self._request("connect", params)
        except ClawgateError:
            self._closed = True
            await self._socket.close()
            raise
        self.hello = models.ConnectResult.model_validate(hello)
        self._set_state("open")
        return self.hello

    async def call(self, method: str, params: BaseModel | dict[str, Any] | None = None) -> Any:
        """Calls a method; returns its result as a model (a dict for unknown methods)."""
        if self._socket is None or self._closed and self._reader is None:
            raise ClawgateError(0, "not connected", retryable=True)
        if isinstance(params, BaseModel):
            params = params.model_dump(mode="json", exclude_none=True)
        result = await self._request(method, params or {})
        types = METHODS.get(method)
        return types[1].model_validate(result) if types else result

    async def _request(self, method: str, params: dict[str, Any]) -> Any:
        request_id = f"r{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        except websockets.ConnectionClosed as e:
            self._pending.pop(request_id, None)
            raise ClawgateError(0, f"the connection closed: {e}", retryable=True) from e
        try:
            return await asyncio.wait_for(future, self.request_timeout)
        except asyncio.TimeoutError:
            raise ClawgateError(
                ERROR_CODES["timeout"], f"{method}: no answer within {self.request_timeout} s", retryable=True
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self, socket: Any) -> None:
        try:
            async for text in socket:
                self._receive(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClawgateError(0, "the connection closed", retryable=True))
        self._pending.clear()
        self._set_state("closed")
        if not self._closed and self.reconnect and self.hello is not None:
            asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        initial, most = self._backoff
        while not self._closed:
            self._set_state("reconnecting")
            await asyncio.sleep(min(most, initial * 2**attempt) * random.uniform(0.8, 1.2))
            try:
                await self._open()
                return
            except (OSError, websockets.WebSocketException, ClawgateError):
                attempt += 1

    def _receive(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "event":
            return  # OpenClaw's connect.challenge, which opens every connection
        event = frame.get("event")
        if isinstance(event, str):
            payload_type = EVENTS.get(event)
            data = payload_type.model_validate(frame.get("data")) if payload_type else frame.get("data")
            for handler in self._handlers.get(event, []) + self._handlers.get("*", []):
                handler(data, frame.get("seq"))
            return
        future = self._pending.get(frame.get("id"))
        if future is None or future.done():
            return
        error = frame.get("error")
        if error:
            future.set_exception(
                ClawgateError(error["code"], error["message"], error.get("data"), error.get("retryable", False))
            )
        else:
            future.set_result(frame.get("result"))

    def on(self, event: str, handler: Callable[[Any, int], Any]) -> Callable[[], None]:
        """Calls ``handler(payload, seq)`` for every ``event`` ("*" for all); returns the unsubscribe function."""
        self._handlers.setdefault(event, []).append(handler)
        return lambda: self._handlers[event].remove(handler)

    def on_state(self, handler: Callable[[str], Any]) -> None:
        """Follows the connection: connecting, open, closed, reconnecting."""
        self._state_handlers.append(handler)

    def _set_state(self, state: str) -> None:
        for handler in self._state_handlers:
            handler(state)

    async def close(self) -> None:
        """Closes for good (no reconnect)."""
        self._closed = True
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await self._reader
