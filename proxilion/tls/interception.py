"""The process's interception state: the CA (reloaded on SIGHUP), the leaf cache, the CONNECT policy, the TLS listener."""

from __future__ import annotations

import signal
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from proxilion.tls.ca import CA, CAError, describe, load_ca
from proxilion.tls.connect import ConnectPolicy
from proxilion.tls.leaves import HANDSHAKE_RESULTS, InterceptingTLS, LeafCache

__all__ = ["Interception", "TLSListener"]

log = Logger(namespace="proxilion.tls")

_LEAF_CACHE_SIZE = 1024


class Interception:
    """CA, leaves and CONNECT policy shared by the proxy port and the TLS listener."""

    def __init__(self, settings: Any, metrics: Any, reactor: Any) -> None:
        self._settings = settings
        self._metrics = metrics
        self._reactor = reactor
        self.leaves: LeafCache | None = None
        self.last_error: str | None = None
        if settings.ca_cert_file:
            # Raises CAError: a bad CA stops startup.
            self.leaves = LeafCache(self._load(), metrics, _LEAF_CACHE_SIZE)
            self._export_expiry(self.leaves.ca)
        self.connect = ConnectPolicy(settings.connect_policy, settings.connect_allow, metrics, reactor, lambda: self.leaves is not None)
        for mode in ("connect", "transparent"):
            for result in HANDSHAKE_RESULTS:
                metrics.tls_handshakes.labels(mode, result)
        for result in ("ok", "error"):
            metrics.tls_ca_reloads.labels(result)
        for result in ("hit", "miss"):
            metrics.tls_leaf_cache.labels(result)

    @property
    def enabled(self) -> bool:
        return self.leaves is not None

    def _load(self) -> CA:
        s = self._settings
        return load_ca(s.ca_cert_file, s.ca_key_file, s.ca_extra_cert_file)

    def _export_expiry(self, ca: CA) -> None:
        self._metrics.tls_ca_not_after.set(ca.certificate.not_valid_after_utc.timestamp())

    def count_handshake(self, mode: str, result: str) -> None:
        self._metrics.tls_handshakes.labels(mode, result).inc()

    def tls_for(self, mode: str, expected: str | None = None) -> InterceptingTLS:
        assert self.leaves is not None
        return InterceptingTLS(self.leaves, mode, self.count_handshake, expected)

    def reload(self, why: str = "SIGHUP") -> bool:
        """Read the CA files again; on any problem keep the CA in use and say why."""
        if self.leaves is None:
            return False
        try:
            ca = self._load()
        except CAError as e:
            self.last_error = str(e)
            self._metrics.tls_ca_reloads.labels("error").inc()
            log.error("CA reload ({why}) failed, keeping the current CA: {error}", why=why, error=str(e))
            return False
        self.leaves.replace_ca(ca)
        self.last_error = None
        self._export_expiry(ca)
        self._metrics.tls_ca_reloads.labels("ok").inc()
        log.info("CA reloaded ({why}): {subject}", why=why, subject=ca.certificate.subject.rfc4514_string())
        return True

    def handle_sighup(self) -> None:
        """Reload on SIGHUP too, after whatever handler is installed already (the policy's)."""
        previous = signal.getsignal(signal.SIGHUP)

        def on_hup(signum: int, frame: Any) -> None:
            if callable(previous):
                previous(signum, frame)
            self._reactor.callFromThread(self.reload, "SIGHUP")

        signal.signal(signal.SIGHUP, on_hup)

    def status(self) -> dict[str, Any]:
        if self.leaves is None:
            return {"enabled": False, "connect_policy": self.connect.policy}
        ca = self.leaves.ca
        return {
            "enabled": True,
            "connect_policy": self.connect.policy,
            "tls_port": self._settings.tls_port or None,
            "ca": describe(ca.certificate),
            "extra_ca": describe(ca.extra) if ca.extra is not None else None,
            "leaf_cache_size": len(self.leaves),
            "last_reload_error": self.last_error,
        }


class TLSListener(Service):
    """TLS_PORT: HTTPS whose leaf is chosen by SNI; the connections inside are proxy-port connections."""

    name = "tls"  # type: ignore[assignment]  # Twisted's Service declares `name = None` without a type

    def __init__(self, reactor: Any, settings: Any, interception: Interception, proxy_factory: Any) -> None:
        self._reactor = reactor
        self._settings = settings
        self._interception = interception
        self._proxy_factory = proxy_factory
        self._port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        factory = TLSMemoryBIOFactory(self._interception.tls_for("transparent"), False, _Transparent(self._proxy_factory))
        self._port = self._reactor.listenTCP(self._settings.tls_port, factory, interface=self._settings.bind)
        log.info("TLS listener on {bind}:{port}", bind=self._settings.bind, port=self._settings.tls_port)

    def stopService(self) -> Any:
        super().stopService()
        port, self._port = self._port, None
        return port.stopListening() if port is not None else None


@implementer(IProtocolFactory)
class _Transparent:
    """Builds proxy connections marked as reached through the TLS listener."""

    def __init__(self, proxy_factory: Any) -> None:
        self._proxy_factory = proxy_factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proxy_factory, name)

    def buildProtocol(self, addr: Any) -> Any:
        connection = self._proxy_factory.buildProtocol(addr)
        connection.mode = "transparent"
        return connection
