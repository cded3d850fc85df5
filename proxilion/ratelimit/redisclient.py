"""Redis connections for the rate limiter: one server, Sentinel, or Cluster.

Each server gets one pipelined L{RespProtocol} connection (see
L{proxilion.ratelimit.resp} for why not txredisapi's), kept up by a
ClientService with backoff; AUTH/SELECT (and ROLE behind Sentinel) are
checked before a connection is used, Sentinel discovery and Cluster slot
routing are built on top. The reactor is injected everywhere, and a dead
server fails fast instead of queueing requests.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable, cast
from urllib.parse import unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from proxilion.ratelimit.resp import RedisUnavailable, RespProtocol, ResponseError, describe, encode

__all__ = [
    "Command",
    "RedisUnavailable",
    "ResponseError",
    "RedisTarget",
    "RedisNode",
    "SingleClient",
    "ClusterClient",
    "parse_target",
    "build_client",
    "key_slot",
]

# Reconnect quickly (exact limiting must resume within a second of Redis
# returning) but back off to twice a second while it stays away.
_RETRY = dict(initialDelay=0.05, maxDelay=0.5, factor=2.0)
_MAX_REDIRECTS = 5
_CLUSTER_SLOTS = 16384
# A multi-key command met a slot whose keys are half migrated: Redis asks to retry shortly.
_TRYAGAIN_DELAY = 0.005
_ASKING = encode("ASKING")


class Command:
    """One encoded request for C{run()}: sent as is, or after ASKING when a cluster node answered ASK."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __call__(self, proto: RespProtocol, timeout: float) -> defer.Deferred:
        return proto.request(self.payload, timeout)

    def asking(self, proto: RespProtocol, timeout: float) -> defer.Deferred:
        # ASKING holds for the next command on the same connection only: both
        # are written back to back; a failed ASKING shows up as an ASK reply again.
        proto.request(_ASKING, timeout).addErrback(lambda f: None)
        return self.after_asking(proto, timeout)

    def after_asking(self, proto: RespProtocol, timeout: float) -> defer.Deferred:
        """The one request that ASKING lets through: the command itself."""
        return self(proto, timeout)


def _jitter() -> float:
    return random.uniform(0.0, 0.05)


class RedisTarget:
    """Where Redis is, parsed from the settings; holds the password, never shows it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        password: str | None,
        username: str | None,
        db: int | None,
        sentinels: tuple[tuple[str, int], ...],
        sentinel_master: str | None,
        cluster: bool,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.password, self.username, self.db = password, username, db
        self.sentinels, self.sentinel_master, self.cluster = sentinels, sentinel_master, cluster

    def describe(self) -> str:
        """A log- and status-safe description (no credentials)."""
        if self.sentinel_master:
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {self.sentinel_master}@{where}"
        scheme = "rediss" if self.tls else "redis"
        kind = "cluster seed " if self.cluster else ""
        db = f"/{self.db}" if self.db else ""
        return f"{kind}{scheme}://{self.host}:{self.port}{db}"

    def __repr__(self) -> str:
        return f"<RedisTarget {self.describe()}>"


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what}: {text.strip()!r} must look like host:port")
    return host.strip("[]"), int(port)


def parse_target(settings: Any) -> RedisTarget:
    """Check and split the Redis settings; ValueError names the setting at fault."""
    sentinels: tuple[tuple[str, int], ...] = ()
    if settings.redis_sentinels:
        items = [item for item in settings.redis_sentinels.split(",") if item.strip()]
        sentinels = tuple(_host_port(item, "REDIS_SENTINELS") for item in items)
        if not sentinels:
            raise ValueError("REDIS_SENTINELS: needs at least one host:port")
    host, port, tls, password, username, db = "localhost", 6379, False, None, None, None
    if settings.redis_url:
        parts = urlsplit(settings.redis_url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("REDIS_URL: must be redis://[:password@]host:port/db or rediss://...")
        host, port, tls = parts.hostname, parts.port or 6379, parts.scheme == "rediss"
        password = unquote(parts.password) if parts.password else None
        username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError("REDIS_URL: the path must be a database number, e.g. redis://host:6379/0")
            db = int(path)
        if parts.query:
            raise ValueError("REDIS_URL: query parameters are not supported")
    elif not sentinels:
        raise ValueError("RATE_LIMIT_STORE=redis needs REDIS_URL (or REDIS_SENTINELS and REDIS_SENTINEL_MASTER)")
    if settings.redis_cluster:
        if sentinels:
            raise ValueError("REDIS_CLUSTER: cannot be combined with REDIS_SENTINELS")
        if db:
            raise ValueError("REDIS_URL: Redis Cluster has only database 0")
    return RedisTarget(
        host,
        port,
        tls=tls,
        password=password,
        username=username,
        db=db,
        sentinels=sentinels,
        sentinel_master=settings.redis_sentinel_master if sentinels else None,
        cluster=bool(settings.redis_cluster),
    )


def _endpoint(reactor: Any, host: str, port: int, tls: bool, timeout: float) -> IStreamClientEndpoint:
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    return wrapClientTLS(optionsForClientTLS(host), endpoint) if tls else endpoint


class _NodeProtocol(RespProtocol):
    """A connection that tells its node, and once ready ClientService, when it is lost."""

    def __init__(self, node: "RedisNode") -> None:
        super().__init__(node.name, node.reactor)
        self.node = node
        self.handle: Any = None

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        self.node._lost(self)
        if self.handle is not None:
            self.handle.connectionLost(reason)


class _Factory(protocol.Factory):
    def __init__(self, node: "RedisNode") -> None:
        self.node = node

    def buildProtocol(self, addr: Any) -> _NodeProtocol:
        return _NodeProtocol(self.node)


@implementer(IStreamClientEndpoint)
class _ReadyEndpoint:
    """Connects and sets the connection up (AUTH, SELECT, ROLE) before ClientService sees it.

    ClientService's state machine has no transition for a connection lost
    while it is still connecting, which is what a refused AUTH, a failed TLS
    handshake or a setup timeout are; so it is handed a stand-in protocol
    only once the connection is ready, and hears of its loss only after that.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, node: "RedisNode") -> None:
        self.endpoint, self.node = endpoint, node

    def connect(self, protocolFactory: Any) -> defer.Deferred:
        return defer.ensureDeferred(self._connect(protocolFactory))

    async def _connect(self, protocolFactory: Any) -> Any:
        # Endpoints are typed as returning any IProtocol; this one is what _Factory built.
        proto = cast(_NodeProtocol, await self.endpoint.connect(_Factory(self.node)))
        try:
            await self.node._setup(proto)
        except BaseException:
            proto.transport.abortConnection()
            raise
        handle = protocolFactory.buildProtocol(None)
        handle.makeConnection(proto.transport)
        proto.handle = handle
        self.node._ready(proto)
        return handle


class RedisNode:
    """One server, one pipelined connection, reconnected with backoff by a ClientService.

    C{call} fails fast with L{RedisUnavailable} while the node is down rather
    than waiting for a connection; only the very first attempt is waited for.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        name: str,
        endpoint: IStreamClientEndpoint,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int | None = None,
        require_master: bool = False,
        connect_timeout: float = 1.0,
        on_change: Callable[["RedisNode"], None] | None = None,
    ) -> None:
        self.reactor, self.name = reactor, name
        self.password, self.username, self.db = password, username, db
        self.require_master = require_master
        self.connect_timeout = connect_timeout
        self._on_change = on_change or (lambda node: None)
        self._proto: RespProtocol | None = None
        self.state = "connecting"  # connecting | up | down
        # Calls made before the first attempt finished; fired from the reactor,
        # never from inside ClientService's state machine (it is not reentrant).
        self._waiting: list[defer.Deferred] = []
        self._service = ClientService(
            _ReadyEndpoint(endpoint, self),
            protocol.Factory.forProtocol(protocol.Protocol),
            retryPolicy=backoffPolicy(jitter=_jitter, **_RETRY),
            clock=reactor,
        )

    def __repr__(self) -> str:
        return f"<RedisNode {self.name} {self.state}>"

    @property
    def up(self) -> bool:
        return self._proto is not None

    def start(self) -> None:
        self._service.whenConnected(failAfterFailures=1).addErrback(self._first_attempt_failed)
        self._service.startService()

    def stop(self) -> defer.Deferred:
        self.state = "down"
        return self._service.stopService()

    def _first_attempt_failed(self, failure: Failure) -> None:
        if self.state == "connecting":
            self._set_state("down")
            if not failure.check(defer.CancelledError):
                self.log.warn("Redis {node} unavailable ({why}); retrying in the background", node=self.name, why=describe(failure))
        self.reactor.callLater(0, self._release_waiting)

    def _release_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if self._proto is not None:
                d.callback(self._proto)
            else:
                d.errback(RedisUnavailable(f"could not connect to {self.name}"))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._on_change(self)

    async def _setup(self, proto: RespProtocol) -> None:
        """AUTH, SELECT and ROLE (or a PING), pipelined; the connection is used only once they answered.

        Even with nothing to set up one round trip is made, so that C{up}
        means the server answered (after the TLS handshake, when there is one).
        """
        timeout = self.connect_timeout
        steps: list[tuple[str, defer.Deferred]] = []
        if self.password is not None:
            who = (self.username,) if self.username else ()
            steps.append(("AUTH", proto.command("AUTH", *who, self.password, timeout=timeout)))
        if self.db is not None:
            steps.append(("SELECT", proto.command("SELECT", self.db, timeout=timeout)))
        if self.require_master:
            steps.append(("ROLE", proto.command("ROLE", timeout=timeout)))
        if not steps:
            steps.append(("PING", proto.command("PING", timeout=timeout)))
        errors, role = [], None
        for name, d in steps:
            try:
                reply = await d
            except ResponseError as e:
                errors.append(f"{name} failed: {e}")
            else:
                role = reply if name == "ROLE" else role
        if errors:
            why = "; ".join(errors)
            self.log.error("Redis {node} refused the connection setup: {why}", node=self.name, why=why)
            raise RedisUnavailable(f"{self.name}: {why}")
        if self.require_master and (not role or role[0] != "master"):
            raise RedisUnavailable(f"{self.name} is not a master (role {role[0] if role else None!r})")

    def _ready(self, proto: RespProtocol) -> None:
        self._proto = proto
        self.log.info("Redis {node} connected", node=self.name)
        self._set_state("up")
        if self._waiting:
            self.reactor.callLater(0, self._release_waiting)

    def _lost(self, proto: RespProtocol) -> None:
        if self._proto is proto:
            self._proto = None
            if self.state == "up":
                self.log.warn("Redis {node} connection lost; falling back to local buckets", node=self.name)
                self._set_state("down")

    def abort(self) -> None:
        """Drop the current connection (it is stuck or talks to a replica); ClientService reconnects."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()

    def call(self, command: Callable[[RespProtocol, float], defer.Deferred], timeout: float) -> defer.Deferred:
        """Run C{command(protocol, timeout)}: it writes its request(s) and returns their reply.

        Connection problems and timeouts (after C{timeout} seconds) fail with
        L{RedisUnavailable}; Redis error replies (MOVED, ASK, ...) come
        through as L{ResponseError}.
        """
        proto = self._proto
        if proto is not None:
            try:
                return command(proto, timeout)
            except Exception:
                return defer.fail()
        if self.state != "connecting":
            return defer.fail(RedisUnavailable(f"not connected to {self.name}"))
        # Only before the first connection attempt has finished; still bounded by the timeout.
        waiter: defer.Deferred = defer.Deferred(lambda d: self._waiting.remove(d) if d in self._waiting else None)
        self._waiting.append(waiter)
        timer = self.reactor.callLater(timeout, waiter.cancel)

        def connected(proto: RespProtocol) -> defer.Deferred:
            timer.cancel()
            return command(proto, timeout)

        def failed(failure: Failure) -> Failure:
            if timer.active():
                timer.cancel()
            if failure.check(defer.CancelledError):
                return Failure(RedisUnavailable(f"{self.name} did not connect within {timeout * 1000:.0f} ms"))
            return failure

        return waiter.addCallbacks(connected, failed)


@implementer(IStreamClientEndpoint)
class _SentinelEndpoint:
    """Asks the sentinels, in order, for the master's address before every connection attempt."""

    def __init__(self, reactor: Any, sentinels: list[RedisNode], master: str, tls: bool, timeout: float) -> None:
        self.reactor, self.sentinels, self.master = reactor, sentinels, master
        self.tls, self.timeout = tls, timeout
        self.address: tuple[str, int] | None = None

    def connect(self, protocolFactory: Any) -> defer.Deferred:
        return defer.ensureDeferred(self._connect(protocolFactory))

    async def _connect(self, protocolFactory: Any) -> Any:
        for sentinel in self.sentinels:
            try:
                reply = await sentinel.call(
                    lambda p, t: p.command("SENTINEL", "get-master-addr-by-name", self.master, timeout=t), self.timeout
                )
            except Exception:
                continue
            if reply:
                self.address = (str(reply[0]), int(reply[1]))
                endpoint = _endpoint(self.reactor, self.address[0], self.address[1], self.tls, self.timeout)
                return await endpoint.connect(protocolFactory)
        raise RedisUnavailable(f"no sentinel knows a master named {self.master!r}")


class SingleClient:
    """A single server or a Sentinel-managed master: every key lives on one node."""

    cluster = False

    def __init__(self, node: RedisNode, extra: Iterable[RedisNode] = ()) -> None:
        self.node = node
        self._extra = list(extra)

    @property
    def up(self) -> bool:
        return self.node.up

    def nodes(self) -> list[RedisNode]:
        return [self.node]

    def start(self) -> None:
        for node in self._extra:
            node.start()
        self.node.start()

    def stop(self) -> defer.Deferred:
        return defer.gatherResults([n.stop() for n in [self.node, *self._extra]], consumeErrors=True)

    def run(self, tag: str, command: Command, timeout: float) -> defer.Deferred:
        return self.node.call(command, timeout)


_CRC16_TABLE = []
for _byte in range(256):
    _crc = _byte << 8
    for _ in range(8):
        _crc = ((_crc << 1) ^ 0x1021) if _crc & 0x8000 else (_crc << 1)
    _CRC16_TABLE.append(_crc & 0xFFFF)


def key_slot(key: str) -> int:
    """Redis Cluster slot: CRC16 (XMODEM) of the hash tag, or of the whole key without one."""
    data = key.encode("utf-8")
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc % _CLUSTER_SLOTS


class ClusterClient:
    """Redis Cluster: routes each call by the slot of its hash tag.

    The slot map comes from CLUSTER SLOTS on any reachable node; a MOVED reply
    updates the slot at once and refreshes the whole map in the background,
    an ASK reply is followed once with ASKING on the named node.
    """

    cluster = True
    log = Logger()

    def __init__(self, reactor: Any, seeds: list[tuple[str, int]], make_node: Callable[[str, int], RedisNode], timeout: float) -> None:
        self.reactor, self.timeout = reactor, timeout
        self._seeds = seeds
        self._make_node = make_node
        self._nodes: dict[tuple[str, int], RedisNode] = {}
        self._slots: list[tuple[str, int] | None] = [None] * _CLUSTER_SLOTS
        self._refreshing: defer.Deferred | None = None
        self._stopped = False

    def _node(self, address: tuple[str, int]) -> RedisNode:
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = self._make_node(*address)
            if not self._stopped:
                node.start()
        return node

    def nodes(self) -> list[RedisNode]:
        return list(self._nodes.values())

    @property
    def up(self) -> bool:
        masters = {address for address in self._slots if address is not None}
        if not masters:
            return False
        return all(address in self._nodes and self._nodes[address].up for address in masters)

    def start(self) -> None:
        for seed in self._seeds:
            self._node(seed)
        self.refresh()

    def stop(self) -> defer.Deferred:
        self._stopped = True
        return defer.gatherResults([n.stop() for n in self._nodes.values()], consumeErrors=True)

    def refresh(self) -> defer.Deferred:
        """Reload the slot map (one refresh at a time); never fails."""
        if self._refreshing is None:
            self._refreshing = defer.ensureDeferred(self._refresh())
            self._refreshing.addBoth(self._refreshed)
        return self._refreshing

    def _refreshed(self, result: Any) -> None:
        self._refreshing = None
        if isinstance(result, Failure):
            self.log.warn("Redis Cluster slot map refresh failed: {why}", why=result.getErrorMessage())

    async def _refresh(self) -> None:
        candidates = sorted(self._nodes.values(), key=lambda n: not n.up)
        for node in candidates:
            if self._stopped:
                return
            try:
                reply = await node.call(lambda p, t: p.command("CLUSTER", "SLOTS", timeout=t), max(self.timeout, 1.0))
            except Exception:
                continue
            slots: list[tuple[str, int] | None] = [None] * _CLUSTER_SLOTS
            for entry in reply:
                first, last, master = int(entry[0]), int(entry[1]), entry[2]
                host = str(master[0]) or node.name.rpartition(":")[0]
                address = (host, int(master[1]))
                for slot in range(first, last + 1):
                    slots[slot] = address
            self._slots = slots
            for address in {a for a in slots if a is not None}:
                self._node(address)
            return
        raise RedisUnavailable("no cluster node answered CLUSTER SLOTS")

    def _address_for(self, slot: int) -> tuple[str, int]:
        return self._slots[slot] or self._seeds[0]

    def run(self, tag: str, command: Command, timeout: float) -> defer.Deferred:
        return defer.ensureDeferred(self._run(key_slot("{" + tag + "}"), command, timeout))

    async def _run(self, slot: int, command: Command, timeout: float) -> Any:
        address, asking = self._address_for(slot), False
        for _ in range(_MAX_REDIRECTS):
            node = self._node(address)
            try:
                return await node.call(command.asking if asking else command, timeout)
            except ResponseError as e:
                kind, _, rest = str(e).partition(" ")
                if kind == "TRYAGAIN":
                    await task.deferLater(self.reactor, _TRYAGAIN_DELAY, lambda: None)
                    continue
                if kind not in ("MOVED", "ASK"):
                    raise
                target = _host_port(rest.partition(" ")[2], "cluster redirect")
                address, asking = target, kind == "ASK"
                if kind == "MOVED":
                    self._slots[slot] = target
                    self.refresh()
            except RedisUnavailable:
                # A failed master is replaced by a replica; find out which.
                self.refresh()
                raise
        raise RedisUnavailable(f"too many cluster redirects for slot {slot}")


def build_client(reactor: Any, target: RedisTarget, timeout: float, on_change: Callable[[RedisNode], None]) -> Any:
    """The client for C{target}: L{SingleClient} or L{ClusterClient}."""
    connect_timeout = max(1.0, timeout)

    def make_node(host: str, port: int, **kw: Any) -> RedisNode:
        return RedisNode(
            reactor,
            f"{host}:{port}",
            _endpoint(reactor, host, port, target.tls, connect_timeout),
            password=target.password,
            username=target.username,
            db=target.db,
            connect_timeout=connect_timeout,
            on_change=on_change,
            **kw,
        )

    if target.cluster:
        return ClusterClient(reactor, [(target.host, target.port)], make_node, timeout)
    if target.sentinel_master:
        sentinels = [
            RedisNode(reactor, f"sentinel {h}:{p}", _endpoint(reactor, h, p, False, connect_timeout), connect_timeout=connect_timeout)
            for h, p in target.sentinels
        ]
        endpoint = _SentinelEndpoint(reactor, sentinels, target.sentinel_master, target.tls, connect_timeout)
        master = RedisNode(
            reactor,
            f"master {target.sentinel_master}",
            endpoint,
            password=target.password,
            username=target.username,
            db=target.db,
            require_master=True,
            connect_timeout=connect_timeout,
            on_change=on_change,
        )
        return SingleClient(master, sentinels)
    return SingleClient(make_node(target.host, target.port))
