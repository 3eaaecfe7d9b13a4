import NIOCore
import Testing
@testable import Cluster

/// The NATS wire format, without a server: what the decoder makes of the server's bytes.
@Suite struct NATSProtocolTests {
    func parseAll(_ chunks: [String]) throws -> [NATSServerOp] {
        var buffer = ByteBuffer()
        var out: [NATSServerOp] = []
        for c in chunks {
            buffer.writeString(c)
            while let op = try NATSServerOpDecoder.parse(&buffer) { out.append(op) }
        }
        return out
    }

    @Test func operationsSplitAcrossReadsAreJoinedAndNamesAreCaseInsensitive() throws {
        let ops = try parseAll(["INFO {\"max_payload\":1024}\r\npi", "ng\r\nPONG\r\n+OK\r\nMSG a.b 7 5\r\nhel", "lo\r\n",
                                "msg a.c 8 reply.to 0\r\n\r\n-ERR 'Authorization Violation'\r\n"])
        #expect(ops.count == 7)
        #expect(ops[1] == .ping && ops[2] == .pong && ops[3] == .ok)
        #expect(ops[4] == .msg(subject: "a.b", sid: 7, reply: nil, payload: ByteBuffer(string: "hello")))
        #expect(ops[5] == .msg(subject: "a.c", sid: 8, reply: "reply.to", payload: ByteBuffer()))
        #expect(ops[6] == .err("Authorization Violation"))
    }

    @Test func aPayloadWithCRLFInsideIsCutByItsLength() throws {
        let ops = try parseAll(["MSG s 1 6\r\na\r\nb\r\n\r\nPING\r\n"])
        #expect(ops == [.msg(subject: "s", sid: 1, reply: nil, payload: ByteBuffer(string: "a\r\nb\r\n")), .ping])
    }

    @Test func garbageIsAnError() {
        #expect(throws: NATSProtocolError.self) { try parseAll(["HELLO there\r\n"]) }
        #expect(throws: NATSProtocolError.self) { try parseAll(["MSG s x 5\r\n"]) }
    }

    @Test func serverURLsParse() {
        let u = NATSServerURL("nats://user:p%40ss@nats.example:4223")!
        #expect(u.host == "nats.example" && u.port == 4223 && u.user == "user" && u.password == "p@ss" && !u.requiresTLS)
        #expect(u.description == "nats://nats.example:4223")
        #expect(NATSServerURL("tls://[::1]")!.requiresTLS && NATSServerURL("tls://[::1]")!.port == 4222)
        #expect(NATSServerURL("10.0.0.1:4222")?.host == "10.0.0.1")
        #expect(NATSServerURL("http://x") == nil)
        #expect(NATSServerURL("nats://host:99999") == nil)
    }

    @Test func clusterPayloadsRoundTrip() throws {
        let message = ByteBuffer(string: #"{"from":"p1","event":"x"}"#)
        guard case .directed(let room, let peer, let body)? = ClusterWire.decode(ClusterWire.directed(room: "r", to: "p2", message: message))
        else { Issue.record("not directed"); return }
        #expect(room == "r" && peer == "p2" && body == message)
        guard case .broadcast("r", let b)? = ClusterWire.decode(ClusterWire.broadcast(room: "r", message: message)) else {
            Issue.record("not broadcast"); return
        }
        #expect(b == message)
        var c = ClusterControl(type: .revoke, instance: "i1", boot: "b", started: 1)
        c.revoked = ["s1": 2]
        guard case .control(let d)? = ClusterWire.decode(ClusterWire.control(c)) else { Issue.record("not control"); return }
        #expect(d.type == .revoke && d.revoked == ["s1": 2] && d.instance == "i1")
        let garbage = ClusterWire.decode(ByteBuffer(string: "Z nonsense\n"))
        #expect(garbage == nil ? true : false)
    }
}
