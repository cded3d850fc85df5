"""Proxilion in memory, for your tests and ours.

L{InMemoryProxilion} builds a whole Proxilion process the way the daemon does
(L{proxilion.app.build} from L{proxilion.config.Settings}) but on a
C{MemoryReactorClock}: no sockets, no threads, no wall-clock waits. Every
upstream provider is served by the in-process fake provider
(L{proxilion.fakeprovider.FakeProvider}); the audit rows go to an in-memory
SQLite store the test reads. Bytes move between the client, the proxy and the
fake provider when the harness pumps them (L{InMemoryProxilion.settle}), and
time moves only when the test (or a helper waiting for an answer) advances it.

Two front ends sit on top: a pytest plugin (fixtures C{proxilion} and
C{fake_provider}, see L{proxilion.pytest_plugin}) and L{ProxilionTestMixin}
for trial, whose helpers return Deferreds. docs/TESTING.md shows both.
"""

from __future__ import annotations

import json as jsonlib
import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import httptools
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.resource import IResource
from twisted.web.server import Site
from zope.interface import implementer

from proxilion.analytics.event import AuditEvent
from proxilion.analytics.store import MemoryStore
from proxilion.app import Proxilion, build
from proxilion.config import PROVIDER_NAMES, load_settings
from proxilion.fakeprovider import FakeProvider, make_site
from proxilion.transport import StreamTransport

if TYPE_CHECKING:
    from treq.testing import StubTreq

__all__ = [
    "ADMIN_TOKEN", "FAKE_PROVIDER_URL", "Answer", "ClientConnection", "InMemoryNetwork",
    "InMemoryProxilion", "ProxilionTestMixin",
]

# Where every provider points: the fake provider, reached through the in-memory network.
FAKE_PROVIDER_URL = "http://fake-provider.test"
ADMIN_TOKEN = "in-memory-admin-token"

# Simulated seconds a helper lets pass while it waits for an answer; past it the test fails.
_ANSWER_WITHIN = 3600.0
# Pump rounds without progress after which settle() gives up (a protocol loop would spin forever).
_SETTLE_ROUNDS = 10_000


@attrs.frozen
class Answer:
    """One HTTP answer as the client saw it."""

    status: int
    # Lower-case names; repeated headers joined with ", ".
    headers: Mapping[str, str]
    body: bytes
    # Trailer fields after a chunked body's last chunk, named and joined as headers are.
    trailers: Mapping[str, str] = attrs.field(factory=dict)

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class InMemoryNetwork:
    """Connections between in-memory protocols, pumped on one clock."""

    def __init__(self, clock: MemoryReactorClock) -> None:
        self.clock = clock
        self._pumps: list[iosim.IOPump] = []

    def connect(self, server: IProtocol, client: IProtocol, client_ip: str = "127.0.0.1") -> iosim.IOPump:
        """Join C{client} to C{server}; bytes move on L{pump}."""
        server_address = IPv4Address("TCP", "10.0.0.1", 443)
        client_address = IPv4Address("TCP", client_ip, 40000 + len(self._pumps) % 20000)
        pump = iosim.connect(
            server, iosim.FakeTransport(server, True, server_address, client_address),
            client, iosim.FakeTransport(client, False, client_address, server_address),
            greet=False, clock=self.clock,
        )
        self._pumps.append(pump)
        return pump

    def pump(self) -> bool:
        """Move what is buffered on every connection, once; True if anything moved."""
        moved = False
        for pump in list(self._pumps):
            if pump.pump():
                moved = True
            if pump.clientIO.disconnected and pump.serverIO.disconnected:
                self._pumps.remove(pump)
        return moved

    def endpoint_to(self, factory: IProtocolFactory) -> IStreamClientEndpoint:
        """A client endpoint whose connections reach C{factory} (a Site, say) in memory."""
        return _Endpoint(self, factory)


@implementer(IStreamClientEndpoint)
class _Endpoint:
    def __init__(self, network: InMemoryNetwork, server_factory: IProtocolFactory) -> None:
        self._network = network
        self._server_factory = server_factory

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        server = self._server_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        client = protocolFactory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 443))
        if server is None or client is None:
            return fail(ConnectionRefusedError("a factory refused the connection"))
        self._network.connect(server, client)
        return succeed(client)


class ClientConnection(Protocol):
    """A raw client connection to the proxy port: send bytes, read what came back."""

    transport: StreamTransport  # type: ignore[assignment]  # see proxilion.transport

    def __init__(self) -> None:
        self.received = b""
        self.closed = False
        # Answers parsed off the connection so far, in order.
        self.answers: list[Answer] = []
        self._parser = httptools.HttpResponseParser(self)
        self._waiters: list[Deferred[Answer]] = []
        self._headers: dict[str, str] = {}
        self._trailers: dict[str, str] = {}
        self._fields = self._headers  # where the parser's fields go: headers, then trailers
        self._body: list[bytes] = []
        self._handed = 0

    def send(self, data: bytes) -> None:
        """Write C{data} to the proxy (it arrives on the next pump)."""
        self.transport.write(data)

    def close(self) -> None:
        """Go away, as a client that hangs up does."""
        self.transport.loseConnection()

    def next_answer(self) -> Deferred[Answer]:
        """Fires with the next complete answer not yet handed out, in order."""
        d: Deferred[Answer] = Deferred()
        self._waiters.append(d)
        self._hand_out()
        return d

    def _hand_out(self) -> None:
        while self._waiters and self._handed < len(self.answers):
            self._handed += 1
            self._waiters.pop(0).callback(self.answers[self._handed - 1])

    # Protocol
    def dataReceived(self, data: bytes) -> None:
        self.received += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            # Bytes a test asked for (a 100 Continue followed by garbage, say): kept in `received`.
            return

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self.closed = True

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = self._fields = {}
        self._trailers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        fields = self._fields
        fields[key] = f"{fields[key]}, {text}" if key in fields else text

    def on_headers_complete(self) -> None:
        # llhttp reports a chunked body's trailer fields through on_header too.
        self._fields = self._trailers

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return
        self.answers.append(Answer(status, self._headers, b"".join(self._body), self._trailers))
        self._hand_out()


def _request_bytes(method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: proxilion.test"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class InMemoryProxilion:
    """A Proxilion built from settings on a memory reactor, every provider served by the fake provider.

    @param policy: a policy YAML file (default: the shipped policy).
    @param rate_limit_per_minute: requests per minute per identity; 0 turns limiting off.
    @param rate_limit_burst: the bucket's size.
    @param settings: any other setting, by name (as in L{proxilion.config.SPECS}).
    @param data_dir: for the journal and spool (default: a new temporary directory).
    @param chunk_delay: seconds between the fake provider's stream chunks (simulated time).
    @param upstream: serves every provider instead of the fake provider (a scripted upstream, say);
        one whose C{buildProtocol} returns None refuses connections, as an upstream that is down.
    """

    def __init__(
        self,
        *,
        policy: str | os.PathLike[str] | None = None,
        rate_limit_per_minute: int = 0,
        rate_limit_burst: int = 100,
        settings: Mapping[str, Any] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        chunk_delay: float = 0.0,
        upstream: IProtocolFactory | None = None,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.network = InMemoryNetwork(self.clock)
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="proxilion-test-")
            data_dir = self._temporary.name
        options: dict[str, Any] = {
            "data_dir": os.fspath(data_dir),
            "policy_file": os.fspath(policy) if policy is not None else None,
            "rate_limit_per_minute": rate_limit_per_minute,
            "rate_limit_burst": rate_limit_burst,
            "upstreams": {name: FAKE_PROVIDER_URL for name in PROVIDER_NAMES},
            "admin_token": ADMIN_TOKEN,
            **(settings or {}),
        }
        self.settings = load_settings(options, {}, None)
        site = make_site(clock=self.clock, chunk_delay=chunk_delay)
        self.fake_provider: FakeProvider = site.resource
        self.store = MemoryStore(self.clock)
        # The access log's events, as the daemon's log observer would have them (one test's worth).
        self.access_log: list[dict[str, Any]] = []
        provider_endpoint = self.network.endpoint_to(upstream if upstream is not None else site)
        self.app: Proxilion = build(
            self.settings, self.clock, self.access_log.append,
            upstream_endpoint=lambda scheme, host, port: provider_endpoint,
            analytics_store=self.store,
            # Spool files are local and small in tests: written on the spot, no thread.
            analytics_io=maybeDeferred,
            scan_pool=False,
        )
        self._started = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start every service in order, as the daemon does; the ports 'listen' on the memory reactor."""
        self.app.root.startService()
        self.settle()
        self._started = True
        result = _result(self.app.root.started)
        if isinstance(result, Failure):
            result.raiseException()

    def begin_stop(self) -> Deferred[None]:
        """Begin the stop sequence (drain, flush), as SIGTERM does, without letting time pass.

        Fires when the sequence has run to its end; drive time yourself (L{advance}, L{wait}).
        A later L{stop} joins it.
        """
        stopping: Deferred[None] = self.app.root.stopService()
        return stopping

    def stop(self) -> None:
        """Run the stop sequence (drain, flush) to its end, letting simulated time pass."""
        if self._started:
            self._started = False
            self.wait(self.begin_stop())
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    # -- time and bytes ----------------------------------------------------

    def settle(self) -> None:
        """Move bytes and run due calls until nothing more happens at the current time."""
        for _ in range(_SETTLE_ROUNDS):
            self.clock.advance(0)
            if not self.network.pump():
                return
        raise AssertionError("the in-memory network never went quiet")

    def advance(self, seconds: float) -> None:
        """Let C{seconds} of simulated time pass, running what falls due on the way."""
        end = self.clock.seconds() + seconds
        self.settle()
        while True:
            due = [call.getTime() for call in self.clock.getDelayedCalls() if call.getTime() <= end]
            step = (min(due) if due else end) - self.clock.seconds()
            self.clock.advance(max(step, 0.0))
            self.settle()
            if not due:
                return

    def wait(self, d: Deferred[Any], within: float = _ANSWER_WITHIN) -> Any:
        """C{d}'s result, letting simulated time pass (from one due call to the next) until it fires.

        Raises its failure, or C{AssertionError} if it has not fired within C{within} simulated seconds.
        """
        end = self.clock.seconds() + within
        self.settle()
        while not d.called and self.clock.seconds() < end:
            pending = [call.getTime() for call in self.clock.getDelayedCalls()]
            if not pending:
                break
            self.advance(max(min(pending) - self.clock.seconds(), 0.0))
        result = _result(d)
        if result is _PENDING:
            raise AssertionError(f"nothing happened within {within} simulated seconds")
        if isinstance(result, Failure):
            result.raiseException()
        return result

    # -- the proxy port ----------------------------------------------------

    def connect(self, client_ip: str = "127.0.0.1") -> ClientConnection:
        """A new client connection to the proxy port."""
        client = ClientConnection()
        server = self._listening(self.settings.port).buildProtocol(IPv4Address("TCP", client_ip, 40000))
        if server is None:
            raise RuntimeError("the proxy port refused the connection")
        self.network.connect(server, client, client_ip)
        self.settle()
        return client

    def send(
        self, method: str, path: str, *, json: Any = None, body: bytes | None = None,
        headers: Mapping[str, str] | None = None, client_ip: str = "127.0.0.1",
    ) -> Deferred[Answer]:
        """Send one request on a new connection; fires with the answer once enough is pumped."""
        headers = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        connection = self.connect(client_ip)
        answer = connection.next_answer()
        connection.send(_request_bytes(method, path, body, headers))
        return answer

    def request(
        self, method: str, path: str, *, json: Any = None, body: bytes | None = None,
        headers: Mapping[str, str] | None = None, client_ip: str = "127.0.0.1",
    ) -> Answer:
        """Send one request and return its answer, letting simulated time pass until it comes."""
        d = self.send(method, path, json=json, body=body, headers=headers, client_ip=client_ip)
        answer: Answer = self.wait(d)
        return answer

    def chat(self, text: str, *, api_key: str = "sk-test-in-memory", headers: Mapping[str, str] | None = None) -> Answer:
        """One OpenAI chat completion whose user message is C{text}."""
        return self.request(
            "POST", "/proxy/openai/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
            headers={"Authorization": f"Bearer {api_key}", **(headers or {})},
        )

    # -- what happened -----------------------------------------------------

    def audit(self) -> list[AuditEvent]:
        """The audit rows written so far, oldest first (lets the writer's flush interval pass)."""
        self.advance(self.settings.analytics_flush_interval)
        return self.store.stored()

    def access_lines(self, **fields: Any) -> list[dict[str, Any]]:
        """The access log's events (one per request) whose fields have these values, oldest first."""
        return [event for event in self.access_log if all(event.get(k) == v for k, v in fields.items())]

    def upstream_requests(self) -> list[dict[str, Any]]:
        """What the fake provider received (method, path, headers, body), oldest first."""
        return self.fake_provider.requests

    # -- the admin port ----------------------------------------------------

    @property
    def admin_resource(self) -> IResource:
        """The admin site's root resource (wrap it in C{treq.testing.StubTreq})."""
        site = self._listening(self.settings.admin_port)
        assert isinstance(site, Site)
        return site.resource

    def admin_headers(self) -> dict[str, str]:
        """Headers that authenticate to the admin API."""
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def admin_client(self) -> StubTreq:
        """A treq client of the admin site, in memory (call its C{flush()} after a request)."""
        # Imported here: treq comes with the test extra; the proxy itself does not need it.
        from treq.testing import StubTreq

        return StubTreq(self.admin_resource)

    def _listening(self, port: int) -> IProtocolFactory:
        for number, factory, _backlog, _interface in self.clock.tcpServers:
            if number == port:
                return factory
        raise AssertionError(f"nothing listens on port {port}: call start() first")


_PENDING = object()


def _result(d: Deferred[Any]) -> Any:
    """A fired Deferred's result or failure (taken off it); L{_PENDING} if it has not fired."""
    if not d.called:
        return _PENDING
    box: list[Any] = []
    d.addBoth(box.append)
    return box[0] if box else _PENDING


class ProxilionTestMixin:
    """For C{twisted.trial.unittest.TestCase}: an in-memory Proxilion per test, helpers returning Deferreds.

    Call L{start_proxilion} in C{setUp} (or in the test); it is stopped in cleanup.
    """

    proxilion: InMemoryProxilion

    def start_proxilion(self, **options: Any) -> InMemoryProxilion:
        """Build and start an L{InMemoryProxilion} with C{options}; stopped when the test ends."""
        self.proxilion = InMemoryProxilion(**options)
        self.proxilion.start()
        self.addCleanup(self.proxilion.stop)  # type: ignore[attr-defined]
        return self.proxilion

    def proxilion_request(self, method: str, path: str, **kwargs: Any) -> Deferred[Answer]:
        """The answer to one request, as a Deferred (simulated time passes until it is complete)."""
        return maybeDeferred(self.proxilion.request, method, path, **kwargs)

    def proxilion_chat(self, text: str, **kwargs: Any) -> Deferred[Answer]:
        """The answer to one OpenAI chat completion carrying C{text}, as a Deferred."""
        return maybeDeferred(self.proxilion.chat, text, **kwargs)

    def proxilion_audit(self) -> Deferred[list[AuditEvent]]:
        """The audit rows so far, as a Deferred."""
        return maybeDeferred(self.proxilion.audit)
