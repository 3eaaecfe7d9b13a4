import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import SignalingTestSupport
@testable import Cluster

/// The NATS client against a real nats-server.
@Suite(.serialized) struct NATSClientTests {
    /// A client with its events and the messages of one subscription as streams.
    final class Harness: Sendable {
        let client: NATSClient
        let events = Mailbox<NATSClient.Event>()
        let messages = Mailbox<NATSMessage>()

        init(_ configuration: NATSClientConfiguration, group: EventLoopGroup) {
            var logger = Logger(label: "nats-test")
            logger.logLevel = .critical
            let events = self.events
            client = NATSClient(configuration: configuration, eventLoop: group.next(), logger: logger) { events.put($0) }
        }

        func subscribe(_ subject: String) {
            let messages = self.messages
            client.subscribe(subject) { messages.put($0) }
        }
    }

    static func configuration(_ server: NATSServerProcess, _ edit: (inout NATSClientConfiguration) -> Void = { _ in })
        -> NATSClientConfiguration
    {
        var c = NATSClientConfiguration(servers: [NATSServerURL(server.url)!])
        c.reconnectWait = .milliseconds(50)
        c.maxReconnectWait = .milliseconds(200)
        edit(&c)
        return c
    }

    @Test func publishAndSubscribeRoundTripInOrder() async throws {
        let server = try NATSServerProcess()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let h = Harness(Self.configuration(server), group: group)
        h.subscribe("test.>")
        h.client.start()
        #expect(await h.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        for i in 0..<200 { h.client.publish("test.numbers", Array("\(i)".utf8)) }
        var got: [String] = []
        while got.count < 200, let m = await h.messages.take(timeout: .seconds(5)) {
            #expect(m.subject == "test.numbers")
            got.append(String(buffer: m.payload))
        }
        #expect(got == (0..<200).map(String.init))
        #expect(h.client.stats.messagesIn.value == 200 && h.client.stats.messagesOut.value == 200)
        await h.client.close()
        try await group.shutdownGracefully()
    }

    @Test func itReconnectsAndResubscribesAfterTheServerRestarts() async throws {
        let server = try NATSServerProcess()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let h = Harness(Self.configuration(server), group: group)
        h.subscribe("restart.test")
        h.client.start()
        #expect(await h.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        server.stop()
        #expect(await h.events.take() == .disconnected)
        try server.start()
        #expect(await h.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        #expect(h.client.stats.reconnects.value == 1)
        h.client.publish("restart.test", Array("after".utf8))
        let m = await h.messages.take(timeout: .seconds(5))
        #expect(m.map { String(buffer: $0.payload) } == "after", "the subscription was made again on the new connection")
        await h.client.close()
        try await group.shutdownGracefully()
    }

    @Test func publicationsWhileDisconnectedAreBufferedUpToTheLimitAndTheRestDropped() async throws {
        let server = try NATSServerProcess()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // The sender hears its own publications (echo): after the reconnect its subscription is made
        // again before the buffered publications go out, so it sees every one the server got.
        let sender = Harness(Self.configuration(server) { $0.bufferLimit = 4096 }, group: group)
        sender.subscribe("buffer.test")
        sender.client.start()
        _ = await sender.events.take()
        server.stop()
        #expect(await sender.events.take() == .disconnected)
        let payload = [UInt8](repeating: 0x61, count: 100)
        for _ in 0..<100 { sender.client.publish("buffer.test", payload) }  // ~13 KB against a 4 KB buffer
        try server.start()
        #expect(await sender.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        let delivered = await sender.messages.drain(quiet: .seconds(1)).count
        #expect(sender.client.stats.dropped.value > 0, "what did not fit was dropped")
        #expect(delivered > 0 && delivered + sender.client.stats.dropped.value == 100, "and counted: \(delivered) delivered")
        await sender.client.close()
        try await group.shutdownGracefully()
    }

    @Test func aWrongPasswordIsReportedAsTheServersError() async throws {
        let server = try NATSServerProcess(arguments: ["--user", "webrtc", "--pass", "right"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let wrong = Harness(Self.configuration(server) { $0.user = "webrtc"; $0.password = "wrong" }, group: group)
        wrong.client.start()
        let event = await wrong.events.take()
        #expect(event == .serverError("Authorization Violation"))
        await wrong.client.close()
        let right = Harness(Self.configuration(server) { $0.user = "webrtc"; $0.password = "right" }, group: group)
        right.client.start()
        #expect(await right.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        await right.client.close()
        let token = try NATSServerProcess(arguments: ["--auth", "s3cret"])
        let withToken = Harness(Self.configuration(token) { $0.token = "s3cret" }, group: group)
        withToken.client.start()
        #expect(await withToken.events.take() == .connected(server: "nats://127.0.0.1:\(token.port)"))
        await withToken.client.close()
        try await group.shutdownGracefully()
    }

    @Test func tlsIsUsedWhenTheServerRequiresIt() async throws {
        let (cert, key) = try makeCertificate()
        let server = try NATSServerProcess(arguments: ["--tls", "--tlscert", cert, "--tlskey", key])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(cert)
        let h = Harness(Self.configuration(server) { $0.tls = tls }, group: group)
        h.subscribe("tls.test")
        h.client.start()
        #expect(await h.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        h.client.publish("tls.test", Array("secret".utf8))
        #expect(await h.messages.take(timeout: .seconds(5)).map { String(buffer: $0.payload) } == "secret")
        await h.client.close()
        // A client that does not trust the certificate never connects.
        let untrusting = Harness(Self.configuration(server), group: group)
        untrusting.client.start()
        #expect(await untrusting.events.take(timeout: .seconds(1)) == nil)
        await untrusting.client.close()
        try await group.shutdownGracefully()
    }

    @Test func publicationsOverTheServersMaxPayloadAreRefused() async throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("nats-\(UUID().uuidString).conf")
        try "max_payload: 1024\n".write(to: config, atomically: true, encoding: .utf8)
        let server = try NATSServerProcess(arguments: ["-c", config.path])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let h = Harness(Self.configuration(server), group: group)
        h.client.start()
        _ = await h.events.take()
        #expect(h.client.maxPayload == 1024)
        #expect(!h.client.publish("big", [UInt8](repeating: 1, count: 2000)))
        #expect(h.client.publish("small", [UInt8](repeating: 1, count: 1000)))
        #expect(h.client.stats.dropped.value == 1)
        await h.client.close()
        try await group.shutdownGracefully()
    }

    @Test func aServerThatStopsAnsweringPingsIsLeftAndReconnectedTo() async throws {
        let server = try NATSServerProcess()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let h = Harness(Self.configuration(server) { $0.pingInterval = .milliseconds(200) }, group: group)
        h.client.start()
        _ = await h.events.take()
        server.signal(SIGSTOP)  // the socket stays open; only the answers stop
        #expect(await h.events.take() == .disconnected)
        server.signal(SIGCONT)
        #expect(await h.events.take() == .connected(server: "nats://127.0.0.1:\(server.port)"))
        await h.client.close()
        try await group.shutdownGracefully()
    }
}

