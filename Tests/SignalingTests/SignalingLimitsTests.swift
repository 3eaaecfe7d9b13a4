import Auth
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import ServiceLifecycle
import SignalingTestSupport
import Testing
import TurnTestSupport
@testable import Signaling

/// Limits and policies: room size, connection count, abuse, idle timeout, duplicate usernames, slow readers.
@Suite struct SignalingLimitsTests {
    func errorCode(_ m: [String: Any]) -> String? {
        m["event"] as? String == "error" ? (m["data"] as? [String: Any])?["code"] as? String : nil
    }

    @Test func fullRoomRefusesTheNextPeerWithRoomFull() async throws {
        try await withSignaling(configure: { $0.maxPeersPerRoom = 2 }) { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: port)
            _ = try await b.join("bob")
            let c = WSTestPeer.connect(port: port)
            c.authenticate("carol")
            #expect(errorCode(try await c.nextJSON()) == "room_full")
            try await c.expectClosed()
            let d = WSTestPeer.connect(port: port, room: "other")
            _ = try await d.join("carol")  // another room still has space
        }
    }

    @Test func connectionLimitRefusesWithServerFull() async throws {
        try await withSignaling(configure: { $0.maxConnections = 1 }) { server, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: port)
            #expect(errorCode(try await b.nextJSON()) == "server_full")
            try await b.expectClosed()
            #expect(server.hub.stats.rejectedConnections.value == 1)
        }
    }

    @Test func repeatedBadMessagesAreRateLimitedThenClosed() async throws {
        try await withSignaling(configure: { $0.abuseLimit = 3 }) { _, port in
            let watcher = WSTestPeer.connect(port: port)
            _ = try await watcher.join("bob")
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            _ = try await watcher.nextJSON()
            for _ in 0..<3 {
                a.send("nope")
                #expect(errorCode(try await a.nextJSON()) == "invalid_json")
            }
            a.send("nope")
            #expect(errorCode(try await a.nextJSON()) == "rate_limited")
            try await a.expectClosed()
            #expect(try await watcher.nextJSON()["event"] as? String == "left")
        }
    }

    @Test func anHTTPConnectionWithoutACompleteRequestInTimeIsClosed() async throws {
        try await withSignaling(configure: { $0.httpTimeout = .seconds(1) }) { server, port in
            let silent = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
            let trickling = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
            trickling.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8))  // the head never ends
            let keptAlive = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
            keptAlive.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            let head = String(decoding: await offPool { keptAlive.receive(through: Array("\r\n\r\n".utf8)) } ?? [], as: UTF8.self)
            #expect(head.hasPrefix("HTTP/1.1 200"))

            #expect(await offPool { silent.drainUntilClosed() }, "a client that never sent a byte is closed")
            #expect(await offPool { trickling.drainUntilClosed() }, "so is one whose request head never completes")
            #expect(await offPool { keptAlive.drainUntilClosed() }, "and an idle keep-alive connection after its response")
            #expect(server.hub.stats.httpTimeouts.value == 2)
        }
    }

    @Test func aGracefulShutdownDoesNotWaitForConnectionsThatNeverSentARequest() async throws {
        // Browsers open spare connections and send nothing on them until they need one. On SIGTERM the
        // server waited for each to reach signaling.http_timeout before it could exit.
        var c = SignalingConfiguration()
        c.listenAddress = "127.0.0.1"
        c.port = 0
        c.keepaliveInterval = .zero
        c.httpTimeout = .seconds(300)
        var logger = Logger(label: "signaling-test")
        logger.logLevel = .critical
        let server = SignalingServer(hub: SignalingHub(configuration: c, credentials: CredentialStore(.init()), logger: logger),
                                     logger: logger)
        let group = ServiceGroup(services: [server], logger: logger)
        let running = Task { try await group.run() }
        let port = await server.listeningPort()
        let spare = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
        let keptAlive = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
        keptAlive.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        #expect(String(decoding: await offPool { keptAlive.receive(through: Array("ok\n".utf8)) } ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 200"))

        await group.triggerGracefulShutdown()
        let spareClosed = await offPool { spare.drainUntilClosed() }
        #expect(spareClosed, "closed by the shutdown, not 300 s after it connected")
        if !spareClosed { spare.shutdown() }  // so that the run ends and the test reports instead of hanging
        #expect(await offPool { keptAlive.drainUntilClosed() })
        try await running.value
        #expect(server.hub.stats.httpTimeouts.value == 0)
    }

    @Test func anUpgradeOnAKeptAliveConnectionClosesItUnansweredForTheProxyToRetry() async throws {
        // A reverse proxy with an upstream connection pool sends the browser's upgrade on a connection
        // that has served a request before; NIO upgrades only a first request.
        try await withSignaling { server, port in
            let pooled = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
            pooled.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            let head = String(decoding: await offPool { pooled.receive(through: Array("\r\n\r\n".utf8)) } ?? [], as: UTF8.self)
            #expect(head.hasPrefix("HTTP/1.1 200"))
            #expect(await offPool { pooled.receive(count: 3) } == Array("ok\n".utf8))
            pooled.send(upgradeRequest("/websocket/room1"))
            #expect(await offPool { pooled.isClosedByPeer() }, "closed without an answer (a 426 would fail the browser)")
            #expect(server.hub.stats.lateUpgradesClosed.value == 1)

            // The retry, on a connection of its own, upgrades as usual.
            let (retry, retryHead) = try #require(await rawWebSocket(port: port, path: "/websocket/room1"))
            #expect(retryHead.hasPrefix("HTTP/1.1 101"))
            retry.shutdown()
            // A plain request on a kept-alive connection is still answered.
            let plain = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
            for _ in 0..<2 {
                plain.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                #expect(String(decoding: await offPool { plain.receive(through: Array("ok\n".utf8)) } ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            }
        }
    }

    @Test func anUpgradedWebSocketIsNotClosedByTheHTTPTimeout() async throws {
        try await withSignaling(configure: { $0.httpTimeout = .seconds(1) }) { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            try await Task.sleep(for: .milliseconds(2500))  // the time under test: two and a half timeouts
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
        }
    }

    @Test func idleSocketIsClosedAndActiveOneIsNot() async throws {
        try await withSignaling { server, port in
            let idle = WSTestPeer.connect(port: port)
            _ = try await idle.join("alice")
            let active = WSTestPeer.connect(port: port)
            _ = try await active.join("bob")
            _ = try await idle.nextJSON()  // joined
            // The idle timeout comes in by reload once both are set up, however long a loaded machine took
            // for that: the active peer has just spoken, the idle one has nothing more to read.
            active.send("ping")
            #expect(try await active.next() == .text("pong"))
            var limits = server.hub.configuration
            limits.idleTimeout = .seconds(3)
            server.hub.updateLimits(from: limits)
            // The idle one closes; the active one keeps talking through it and hears `left`.
            let closing = Task { try await idle.expectClosed(timeout: .seconds(10)) }
            var sawLeft = false
            // 15 pings 300 ms apart outlast the idle one's 3 s, with room for a loaded machine's delays.
            for _ in 0..<15 {
                active.send("ping")
                while true {
                    let e = try await active.next()
                    if e == .text("pong") { break }
                    guard case .text(let t) = e, t.contains(#""event":"left""#) else {
                        Issue.record("unexpected \(e)")
                        return
                    }
                    sawLeft = true
                }
                try await Task.sleep(for: .milliseconds(300))  // pacing the activity, not synchronisation
            }
            try await closing.value
            #expect(sawLeft)
        }
    }

    @Test func replacePolicyClosesTheOlderSessionOfTheSameUsername() async throws {
        try await withSignaling(configure: { $0.duplicateUsername = .replace }) { _, port in
            let watcher = WSTestPeer.connect(port: port)
            _ = try await watcher.join("carol")
            let old = WSTestPeer.connect(port: port)
            let oldID = try #require(try await old.join("alice")["peer_id"] as? String)
            _ = try await watcher.nextJSON()  // joined (old)
            let new = WSTestPeer.connect(port: port)
            let newData = try await new.join("alice")
            let roster = try #require(newData["peers"] as? [[String: String]])
            #expect(roster.map { $0["username"] } == ["carol"])
            #expect(errorCode(try await old.nextJSON()) == "replaced")
            try await old.expectClosed()
            let left = try await watcher.nextJSON()
            #expect(left["event"] as? String == "left")
            #expect((left["data"] as? [String: String])?["peer_id"] == oldID)
            #expect(try await watcher.nextJSON()["event"] as? String == "joined")
        }
    }

    @Test func allowPolicyKeepsBothSessions() async throws {
        try await withSignaling { server, port in
            let a1 = WSTestPeer.connect(port: port)
            _ = try await a1.join("alice")
            let a2 = WSTestPeer.connect(port: port)
            let roster = try #require(try await a2.join("alice")["peers"] as? [[String: String]])
            #expect(roster.map { $0["username"] } == ["alice"])
            #expect(try await a1.nextJSON()["event"] as? String == "joined")
            #expect(server.hub.peers(in: "room1").count == 2)
        }
    }

    @Test func slowConsumerIsDisconnectedInsteadOfBuffering() async throws {
        let hub = SignalingHub(configuration: SignalingConfiguration(), credentials: .init(.init()), logger: .init(label: "t"))
        let channel = EmbeddedChannel()
        let opened = hub.open(source: nil, channel: channel)
        let conn = try #require(opened)
        #expect(conn.send("m0"))
        channel.embeddedEventLoop.run()  // the end-of-tick flush
        #expect(try channel.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.payload == Array("m0".utf8))
        channel.isWritable = false  // its write buffer is over the high-water mark
        #expect(!conn.send("m1"))
        #expect(conn.pendingClose?.reason == "slow consumer")
        #expect(hub.stats.slowConsumers.value == 1)
        #expect(!conn.send("m2"))  // closing: nothing more is written but the close frame
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.opcode == 0x8)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func framesWrittenInOneTickAreFlushedAtItsEndForEveryConnectionOnTheLoop() throws {
        let hub = SignalingHub(configuration: SignalingConfiguration(), credentials: .init(.init()), logger: .init(label: "t"))
        let loop = EmbeddedEventLoop()
        let channelA = EmbeddedChannel(loop: loop), channelB = EmbeddedChannel(loop: loop)
        let a = try #require(hub.open(source: nil, channel: channelA))
        let b = try #require(hub.open(source: nil, channel: channelB))
        #expect(a.send("a1") && b.send("b1") && a.send("a2"))
        // Written, not yet flushed: nothing reaches either socket before the tick ends.
        #expect(try channelA.readOutbound(as: ByteBuffer.self) == nil)
        #expect(try channelB.readOutbound(as: ByteBuffer.self) == nil)
        loop.run()  // the end of the tick: one flush task for the loop
        #expect(try channelA.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.payload == Array("a1".utf8))
        #expect(try channelA.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.payload == Array("a2".utf8))
        #expect(try channelB.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.payload == Array("b1".utf8))
        // The next tick's writes get a flush of their own.
        #expect(b.send("b2"))
        loop.run()
        #expect(try channelB.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.payload == Array("b2".utf8))
        #expect(try channelA.readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func keepaliveClosesAPeerThatDoesNotAnswerItsPing() throws {
        var c = SignalingConfiguration()
        c.keepaliveInterval = .seconds(30)
        c.authTimeout = .seconds(3600)
        let hub = SignalingHub(configuration: c, credentials: .init(.init()), logger: .init(label: "t"))
        let channel = EmbeddedChannel()
        let opened = hub.open(source: nil, channel: channel)
        let conn = try #require(opened)
        let start = ContinuousClock.now
        hub.sweep(now: start + .seconds(31))
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.opcode == 0x9)
        #expect(conn.pendingClose == nil)
        hub.sweep(now: start + .seconds(62))  // no pong came back
        channel.embeddedEventLoop.run()
        let close = try #require(try channel.readOutbound(as: ByteBuffer.self).flatMap(serverFrame))
        #expect(close.opcode == 0x8)
        var data = ByteBuffer(bytes: close.payload)
        #expect(data.readWebSocketErrorCode() == .goingAway)
        #expect(conn.pendingClose?.reason == "keepalive timeout")
    }

    @Test func keepalivePingsKeepAnAnsweringPeerConnected() async throws {
        try await withSignaling(configure: { $0.keepaliveInterval = .milliseconds(200) }) { server, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            try await Task.sleep(for: .seconds(1))  // five ping intervals, answered by the client library
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
            #expect(server.hub.peerCount == 1)
        }
    }
}
