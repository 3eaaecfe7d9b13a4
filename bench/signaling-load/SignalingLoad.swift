// signaling-load: a load client for the signaling half, in the spirit of nextcloud-spreed-signaling's
// `client`. It opens N authenticated WebSocket connections in rooms of K peers, then sends M directed
// messages per second in total for D seconds, and reports delivered messages/s, delivery latency
// percentiles and the server's RSS per connection (read from /proc/PID/status).
//
// The client shares the machine with the server it measures, so every microsecond it spends per message
// is taken from the server. It therefore runs on plain sockets and one epoll loop (Connection.swift,
// LoadLoop.swift): one write(2) per message sent, one read(2) per readable socket, frames built and
// parsed in reused buffers. The earlier version, on SwiftNIO channel handlers, cost about 1.5 times as
// much CPU per message (BENCHMARKS.md, 2026-11-24).
import ArgumentParser
import Foundation

@main
struct SignalingLoad: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "signaling-load",
                                                    abstract: "Load client for webrtc-server's WebSocket signaling.")

    @Option(help: "Server host (an IPv4 address).") var host = "127.0.0.1"
    @Option(help: "Server signaling port.") var port = 8080
    @Option(help: "Signaling ports of several instances of a cluster, comma-separated: connection i goes to the (i mod n)-th, so a room spreads over them (overrides --port).")
    var ports: String?
    @Flag(help: "With --ports: every directed message goes to a peer on another instance.") var cross = false
    @Option(help: "Resume benchmark: every connection but the first of each room drops with a reset (a proxy restart), the first sends this many messages to each of them meanwhile, then all resume; reports the time to resume them all, what was replayed and lost, and the server's RSS per held session.")
    var resumeDrop: Int?
    @Option(help: "Connections to open.") var connections = 1000
    @Option(help: "Peers per room.") var roomSize = 10
    @Option(help: "Directed messages per second, in total (0 = connect, measure memory, stop).") var rate = 0
    @Option(help: "Seconds to send for.") var duration = 10
    @Option(help: "Username to authenticate with (duplicates are allowed by default).") var user = "bench"
    @Option(help: "Password.") var password = "bench"
    @Flag(help: "Log in as USER0, USER1, … (one username per connection) instead of USER each time.") var distinctUsers = false
    @Option(help: "Log in with join tokens instead of a password: a file whose line i is connection i's token, for room load-(i / room size) (bench/auth_bench.py mints them).")
    var tokens: String?
    @Option(name: .customLong("server-pid"), help: "PID of a server process (repeat for several: instances, nats-server), for RSS and CPU.")
    var serverPids: [Int] = []
    var serverPid: Int? { serverPids.first }
    var portList: [Int] { ports.map { $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } } ?? [port] }
    @Option(help: "Seconds allowed for connecting everything.") var connectTimeout = 120

    func validate() throws {
        guard connections > 0, roomSize > 0, rate >= 0, duration > 0 else {
            throw ValidationError("connections, room-size and duration must be positive, rate not negative")
        }
        guard inet_addr(host) != INADDR_NONE else { throw ValidationError("--host must be an IPv4 address") }
        guard !portList.isEmpty else { throw ValidationError("--ports must list ports, e.g. 8081,8082") }
        guard !cross || portList.count > 1 else { throw ValidationError("--cross needs at least two --ports") }
    }

    func run() throws {
        let loop = try LoadLoop()
        let rssBefore = serverPid.flatMap(rssKiB)
        print("server RSS before: \(rssBefore.map { "\($0) KiB" } ?? "n/a")")

        // Phase 1: connect and authenticate, one connection after the other (blocking, with a timeout):
        // the server answers each within a fraction of a millisecond, and a sequential phase keeps the
        // client simple. Events that arrive meanwhile (joined) wait in the sockets until phase 2's loop.
        let started = Date()
        let tokenList = try tokens.map { path in
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        }
        func auth(_ i: Int) -> String {
            if let tokenList { return #"{"event":"authenticate","data":{"token":"\#(tokenList[i % tokenList.count])"}}"# }
            let name = distinctUsers ? "\(user)\(i)" : user
            return #"{"event":"authenticate","data":{"username":"\#(name)","password":"\#(password)"}}"#
        }
        var failed = 0
        let ports = portList
        // Which port each peer is on (for --cross), filled as connections log in.
        var portOf: [String: Int] = [:]
        for i in 0..<connections {
            if Date().timeIntervalSince(started) > Double(connectTimeout) { break }
            do {
                let index = i % ports.count
                let c = try Connection.open(host: host, port: ports[index], path: "/websocket/load-\(i / roomSize)",
                                            authenticate: auth(i))
                c.portIndex = index
                portOf[c.peerID] = index
                try loop.add(c)
            } catch {
                failed += 1
                if failed <= 3 { print("connection \(i) failed: \(error)") }
            }
        }
        if cross {
            let table = portOf
            loop.forEachConnection { c in
                let mine = c.portIndex
                c.acceptsTarget = { id in table[id].map { $0 != mine } ?? false }
            }
        }
        let connectSeconds = Date().timeIntervalSince(started)
        let ok = loop.connectionCount
        print(String(format: "connected and authenticated: %d of %d in %.1f s (%d failed)", ok, connections, connectSeconds,
                     failed))
        print(String(format: "connect rate: %.0f logins/s", Double(ok) / connectSeconds))
        // Let the server settle (allocator, joined broadcasts) before reading RSS; the loop meanwhile
        // reads the joined events, which is how the first peer of each room learns its target.
        loop.run(seconds: 3)
        loop.chooseTargets()  // now that every peer's joined has been read
        if serverPids.count == 1, let pid = serverPid, let before = rssBefore, let after = rssKiB(pid), ok > 0 {
            print(String(format: "server RSS after: %d KiB; per idle connection: %.1f KiB", after, Double(after - before) / Double(ok)))
        }

        if let perPeer = resumeDrop {
            try resumeScenario(loop, perPeer: perPeer, ports: ports)
            loop.closeAll()
            return
        }

        // Phase 2: directed messages at `rate` per second in total, then 2 s to drain what is in flight.
        if rate > 0 {
            let serverCPU0 = serverPids.map(cpuSeconds)
            let clientCPU0 = ownCPUSeconds()
            loop.run(seconds: Double(duration), sendingPerSecond: Double(rate))
            let serverCPU = zip(serverPids, serverCPU0).map { pid, before in cpuSeconds(pid).flatMap { now in before.map { now - $0 } } }
            let clientCPU = ownCPUSeconds() - clientCPU0
            loop.run(seconds: 2)
            var latencies = loop.latenciesMicros
            latencies.sort()
            func pct(_ p: Double) -> Double {
                latencies.isEmpty ? .nan : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000
            }
            let sent = loop.sent, delivered = loop.delivered
            print(String(format: "sent %d, delivered %d (%.2f%% lost), error events %d", sent, delivered,
                         sent == 0 ? 0 : 100 * Double(sent - delivered) / Double(sent), loop.errors))
            print(String(format: "delivered/s: %.0f over %d s", Double(delivered) / Double(duration), duration))
            print(String(format: "latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", pct(0.5), pct(0.9), pct(0.99),
                         latencies.last.map { Double($0) / 1000 } ?? .nan))
            for (pid, cpu) in zip(serverPids, serverCPU) {
                guard let cpu else { continue }
                print(String(format: "server CPU (pid %d): %.2f s over %d s (%.0f%% of one core), %.1f µs per delivered message",
                             pid, cpu, duration, 100 * cpu / Double(duration), delivered == 0 ? 0 : 1e6 * cpu / Double(delivered)))
            }
            if serverPids.count > 1 {
                let total = serverCPU.compactMap { $0 }.reduce(0, +)
                print(String(format: "servers' CPU together: %.2f s, %.1f µs per delivered message", total,
                             delivered == 0 ? 0 : 1e6 * total / Double(delivered)))
            }
            print(String(format: "client CPU: %.2f s (%.0f%% of one core), %.1f µs per delivered message", clientCPU,
                         100 * clientCPU / Double(duration), delivered == 0 ? 0 : 1e6 * clientCPU / Double(delivered)))
            if clientCPU / Double(duration) >= 0.85 {
                // Its one loop both sends and times deliveries: near saturation, latency includes its queue.
                print("warning: the load client's loop was near saturation; the latency figures include its own queueing")
            }
            if loop.lostConnections > 0 { print("warning: \(loop.lostConnections) connections were closed after their login") }
            if let pid = serverPid, let rss = rssKiB(pid) { print("server RSS at end: \(rss) KiB") }
        }
        loop.closeAll()
    }
}

extension SignalingLoad {
    /// `--resume-drop`: the droppers reset their sockets at once, messages are sent to them while they are
    /// away, and they all come back with `resume`.
    func resumeScenario(_ loop: LoadLoop, perPeer: Int, ports: [Int]) throws {
        var all: [Connection] = []
        loop.forEachConnection { all.append($0) }
        // Rooms: connections i*roomSize ..< (i+1)*roomSize; the first of each stays, the others drop.
        let byRoom = Dictionary(grouping: all) { c in all.firstIndex { $0 === c }! / roomSize }
        var senders: [(Connection, [Connection])] = []
        for (_, members) in byRoom.sorted(by: { $0.key < $1.key }) {
            guard let first = members.first else { continue }
            senders.append((first, Array(members.dropFirst())))
        }
        let droppers = senders.flatMap(\.1)
        let rssLive = serverPid.flatMap(rssKiB)
        for d in droppers {
            loop.remove(d)
            d.abort()
        }
        loop.run(seconds: 2)  // the server notices the resets
        let rssHeld = serverPid.flatMap(rssKiB)
        if let live = rssLive, let held = rssHeld {
            print(String(format: "server RSS with %d live sessions: %d KiB; with them held: %d KiB; %.2f KiB per held session beyond a live one",
                         droppers.count, live, held, Double(held - live) / Double(droppers.count)))
        }
        var sent = 0
        for (sender, away) in senders {
            for d in away {
                for _ in 0..<perPeer { loop.send(from: sender, to: d.peerID); sent += 1 }
            }
        }
        loop.run(seconds: 1)
        let deliveredBefore = loop.delivered
        let started = Date()
        var resumed: [Connection] = []
        var failed = 0
        for (i, d) in droppers.enumerated() {
            guard let token = d.resumeToken else { failed += 1; continue }
            let index = all.firstIndex { $0 === d }!
            do {
                let c = try Connection.open(host: host, port: ports[(index + (ports.count > 1 ? 1 : 0)) % ports.count],
                                            path: "/websocket/load-\(index / roomSize)",
                                            authenticate: #"{"event":"resume","data":{"token":"\#(token)"}}"#)
                guard c.peerID == d.peerID else { throw LoadError("resumed as another peer") }
                try loop.add(c)
                resumed.append(c)
            } catch {
                failed += 1
                if failed <= 3 { print("resume \(i) failed: \(error)") }
            }
        }
        let seconds = Date().timeIntervalSince(started)
        loop.run(seconds: 2)
        let replayed = resumed.reduce(0) { $0 + $1.replayed }
        let received = loop.delivered - deliveredBefore
        print(String(format: "resumed %d of %d in %.2f s (%d failed); sent while away %d, replayed %d, received %d (%d lost)",
                     resumed.count, droppers.count, seconds, failed, sent, replayed, received, sent - received))
        if let pid = serverPid, let rss = rssKiB(pid) { print("server RSS at end: \(rss) KiB") }
    }
}

/// utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15, in clock ticks).
func cpuSeconds(_ pid: Int) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func rssKiB(_ pid: Int) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }
    return nil
}
