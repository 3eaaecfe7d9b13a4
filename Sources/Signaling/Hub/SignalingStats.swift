import Synchronization

/// Counters of the signaling half (read by tests, the benchmark and, later, /metrics).
public final class SignalingStats: Sendable {
    public let messagesIn = Atomic<Int>(0)
    public let messagesOut = Atomic<Int>(0)
    public let authFailures = Atomic<Int>(0)
    public let authTimeouts = Atomic<Int>(0)
    public let rejectedConnections = Atomic<Int>(0)
    /// Bad input answered with an `error` or `invalid_message` event.
    public let badMessages = Atomic<Int>(0)
    public let slowConsumers = Atomic<Int>(0)
    public let hookFailures = Atomic<Int>(0)
    public let hookEventsDropped = Atomic<Int>(0)
    public let webhookDeliveries = Atomic<Int>(0)

    public init() {}
}
