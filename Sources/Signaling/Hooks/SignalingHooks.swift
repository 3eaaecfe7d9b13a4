import Logging

/// A peer joining or leaving a room, as hooks see it.
public struct RoomEvent: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case joined, left }
    public let kind: Kind
    public let room: String
    public let peer: PeerInfo
    /// The other peers in the room at that moment (without `peer`).
    public let others: [PeerInfo]

    public init(kind: Kind, room: String, peer: PeerInfo, others: [PeerInfo]) {
        self.kind = kind
        self.room = room
        self.peer = peer
        self.others = others
    }
}

/// Join/leave hooks for apps that embed the server. They run after the `joined`/`left` broadcast, one
/// event at a time in the order the hub saw them, on a task of their own: a slow hook delays the next
/// hook, never signaling.
public protocol SignalingHooks: Sendable {
    func peerJoined(_ event: RoomEvent) async throws
    func peerLeft(_ event: RoomEvent) async throws
}

/// Feeds hook events to the hooks in order through one bounded queue; a full queue drops (and counts)
/// events rather than holding up the hub.
final class HookDispatcher: Sendable {
    static let queueLimit = 10_000

    private let continuation: AsyncStream<RoomEvent>.Continuation
    private let stream: AsyncStream<RoomEvent>
    let hooks: [any SignalingHooks]
    let logger: Logger
    let stats: SignalingStats

    init(hooks: [any SignalingHooks], logger: Logger, stats: SignalingStats) {
        self.hooks = hooks
        self.logger = logger
        self.stats = stats
        (stream, continuation) = AsyncStream.makeStream(of: RoomEvent.self, bufferingPolicy: .bufferingOldest(Self.queueLimit))
    }

    func post(_ event: RoomEvent) {
        guard !hooks.isEmpty else { return }
        if case .dropped = continuation.yield(event) {
            stats.hookEventsDropped.add()
            logger.warning("hook queue full; event dropped", metadata: ["room": "\(event.room)", "kind": "\(event.kind.rawValue)"])
        }
    }

    /// Runs until `finish()`; the signaling service runs it beside the HTTP server.
    func run() async {
        for await event in stream {
            for hook in hooks {
                do {
                    switch event.kind {
                    case .joined: try await hook.peerJoined(event)
                    case .left: try await hook.peerLeft(event)
                    }
                } catch {
                    stats.hookFailures.add()
                    logger.warning("hook failed", metadata: [
                        "hook": "\(type(of: hook))", "kind": "\(event.kind.rawValue)", "room": "\(event.room)", "error": "\(error)",
                    ])
                }
            }
        }
    }

    func finish() { continuation.finish() }
}
