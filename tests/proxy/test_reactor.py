"""The reactor `twistd proxilion` installs: Twisted's epoll reactor without a log context per I/O event."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxilion.reactor import install_unless_chosen
from support.daemon import Daemon, running

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: one reactor per process.
_ECHO = textwrap.dedent("""
    import sys
    from proxilion.reactor import install_unless_chosen
    assert install_unless_chosen()
    from twisted.internet import protocol, reactor
    from twisted.logger import globalLogPublisher
    assert type(reactor).__name__ == "ProxilionEPollReactor", type(reactor)

    logged = []
    # Twisted's legacy log.err events carry "failure"; twisted.logger's carry "log_failure".
    globalLogPublisher.addObserver(lambda e: logged.append(e.get("log_failure") or e.get("failure")))

    class Server(protocol.Protocol):
        def dataReceived(self, data):
            if data == b"boom":
                raise RuntimeError("a protocol bug")
            self.transport.write(data.upper())

    class Client(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(self.factory.send)

        def dataReceived(self, data):
            self.factory.answers.append(data)
            self.transport.loseConnection()

        def connectionLost(self, reason):
            self.factory.done(reason)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
    results = []

    def connect(send, then):
        factory = protocol.ClientFactory.forProtocol(Client)
        factory.send, factory.answers = send, []
        factory.done = lambda reason: then(factory.answers)
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)

    def second(answers):
        # The bug closed that connection and was logged; the reactor serves the next one.
        results.append(answers)
        connect(b"again", finish)

    def finish(answers):
        results.append(answers)
        reactor.stop()

    connect(b"hello", lambda answers: (results.append(answers), connect(b"boom", second)))
    reactor.callLater(10, reactor.stop)
    reactor.run()
    assert results == [[b"HELLO"], [], [b"AGAIN"]], results
    assert any(f is not None and "a protocol bug" in str(f.value) for f in logged), logged
    print("ok")
""")


def test_serves_connections_and_logs_a_protocol_error_then_goes_on():
    out = subprocess.run([sys.executable, "-c", _ECHO], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")


def test_keeps_a_reactor_already_installed():
    # pytest-twisted installed one in this process.
    assert "twisted.internet.reactor" in sys.modules
    assert install_unless_chosen() is False


@pytest.mark.parametrize("args, expected", [
    ((), "proxilion.reactor.ProxilionEPollReactor"),
    (("--reactor=poll",), "twisted.internet.pollreactor.PollReactor"),
])
def test_twistd_installs_it_unless_a_reactor_is_chosen(tmp_path, args, expected):
    with running(Daemon(tmp_path, twistd_args=args)) as d:
        pass
    # Read once the daemon has stopped: info lines are flushed in batches.
    classes = [e.get("reactor") for e in d.log_events() if e.get("reactor")]
    assert classes == [expected]
