"""The RESP protocol on its own: parsing split replies, ordering, timeouts on a Clock, errors."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from proxilion.ratelimit.resp import TIMEOUTS_BEFORE_ABORT, RedisUnavailable, RespProtocol, ResponseError, encode


def connected() -> tuple[RespProtocol, StringTransport, Clock]:
    clock = Clock()
    proto = RespProtocol("redis-test:6379", clock)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def results(d) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def test_encode():
    assert encode("EVALSHA", "abc", 1, 0.5, b"\xff") == b"*5\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$3\r\n0.5\r\n$1\r\n\xff\r\n"


def test_replies_of_every_type_even_split_byte_by_byte():
    proto, transport, _ = connected()
    pending = [results(proto.command("X", timeout=1)) for _ in range(6)]
    assert transport.value() == encode("X") * 6
    stream = b"+OK\r\n:-42\r\n$6\r\nh\xc3\xa9l\r\n\r\n$-1\r\n*3\r\n:1\r\n*2\r\n$0\r\n\r\n$2\r\n\xff\xfe\r\n-ERR x\r\n*-1\r\n"
    for index in range(len(stream)):
        proto.dataReceived(stream[index : index + 1])
    values = [p[0] for p in pending]
    assert values[:4] == ["OK", -42, "hél\r\n", None]
    assert values[4][:2] == [1, ["", b"\xff\xfe"]] and str(values[4][2]) == "ERR x"
    assert values[5] is None


def test_error_reply_fails_only_its_command():
    proto, _, _ = connected()
    first, second = results(proto.command("A", timeout=1)), results(proto.command("B", timeout=1))
    proto.dataReceived(b"-NOSCRIPT No matching script\r\n:7\r\n")
    assert first[0].check(ResponseError) and str(first[0].value).startswith("NOSCRIPT")
    assert second == [7]


def test_timeout_fails_the_call_and_the_late_reply_is_dropped():
    proto, _, clock = connected()
    slow = results(proto.command("SLOW", timeout=0.05))
    clock.advance(0.049)
    assert slow == []
    clock.advance(0.001)
    assert slow[0].check(RedisUnavailable) and "did not answer in time" in str(slow[0].value)
    later = results(proto.command("NEXT", timeout=0.05))
    proto.dataReceived(b":1\r\n:2\r\n")  # the late reply to SLOW, then NEXT's
    assert later == [2]


def test_a_short_call_behind_a_long_one_times_out_on_its_own_deadline():
    proto, _, clock = connected()
    long = results(proto.command("CLUSTER", "SLOTS", timeout=1.0))
    short = results(proto.command("EVALSHA", timeout=0.05))
    clock.advance(0.05)
    clock.advance(0)
    assert short[0].check(RedisUnavailable) and long == []
    clock.advance(0.95)
    clock.advance(0)
    assert long[0].check(RedisUnavailable)


def test_consecutive_timeouts_drop_the_connection():
    proto, transport, clock = connected()
    calls = [results(proto.command("X", timeout=0.05)) for _ in range(TIMEOUTS_BEFORE_ABORT - 1)]
    clock.advance(0.05)
    clock.advance(0)
    assert all(c[0].check(RedisUnavailable) for c in calls) and not transport.disconnecting
    results(proto.command("X", timeout=0.05))
    clock.advance(0.05)
    clock.advance(0)
    assert transport.disconnecting


def test_a_reply_resets_the_timeout_count():
    proto, transport, clock = connected()
    for _ in range(2 * TIMEOUTS_BEFORE_ABORT):
        results(proto.command("X", timeout=0.05))
        clock.advance(0.05)
        clock.advance(0)
        results(proto.command("PING", timeout=0.05))
        proto.dataReceived(b":0\r\n+PONG\r\n")
    assert not transport.disconnecting


def test_readonly_drops_the_connection():
    proto, transport, _ = connected()
    call = results(proto.command("EVALSHA", timeout=1))
    proto.dataReceived(b"-READONLY You can't write against a read only replica.\r\n")
    assert call[0].check(RedisUnavailable) and transport.disconnecting


@pytest.mark.parametrize("garbage", [b"?what\r\n", b":1\r\n:2\r\n"])
def test_an_unreadable_stream_fails_everything_and_drops_the_connection(garbage):
    proto, transport, _ = connected()
    call = results(proto.command("X", timeout=1))
    proto.dataReceived(garbage)
    assert transport.disconnecting
    assert call and (call[0] == 1 or call[0].check(RedisUnavailable))


def test_connection_lost_fails_pending_calls_and_later_ones():
    proto, _, clock = connected()
    call = results(proto.command("X", timeout=1))
    proto.connectionLost()
    assert call[0].check(RedisUnavailable)
    assert results(proto.command("Y", timeout=1))[0].check(RedisUnavailable)
    assert not clock.getDelayedCalls()


def test_a_lone_call_is_sent_at_once_calls_in_flight_wait_to_go_together():
    class TcpTransport(StringTransport):
        no_delay = False
        flushes = 0

        def setTcpNoDelay(self, enabled: bool) -> None:
            self.no_delay = enabled

        def doWrite(self) -> None:
            self.flushes += 1

    proto, transport = RespProtocol("redis-test:6379", Clock()), TcpTransport()
    proto.makeConnection(transport)
    assert transport.no_delay
    proto.command("A", timeout=1)
    assert transport.flushes == 1
    proto.command("B", timeout=1)
    proto.command("C", timeout=1)
    assert transport.flushes == 1
    proto.dataReceived(b":1\r\n:2\r\n:3\r\n")
    proto.command("D", timeout=1)
    assert transport.flushes == 2
    proto.dataReceived(b":4\r\n")
    transport.loseConnection()  # closing: the reactor's doWrite finishes the close
    proto.command("E", timeout=1)
    assert transport.flushes == 2
