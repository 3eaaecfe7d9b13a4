import Foundation
import ServerMetrics
import Synchronization

/// The password lookups configured or plugged in after the built-in ones (sessions → static users →
/// shared secrets → these), asked in order until one knows the user, with what an asynchronous lookup
/// needs to be safe on a busy server:
///
/// - **Nothing waits on an event loop.** `cached` answers at once from the cache (the TURN core and the
///   signaling session ask it first); on a miss they start `resolve` in a task and carry on with other
///   traffic, finishing that one request when the answer is in.
/// - **A cache** keeps each answer, found or unknown, for `cacheTTL`: a user added to the database is
///   accepted, and one removed refused, within that time.
/// - **One lookup per name at a time**: concurrent requests for a name wait for the same lookup.
/// - **A bound on lookups in flight** (`maxInFlight`): past it, a request fails at once (`.overloaded`)
///   rather than queueing without limit behind a slow backend.
/// - **A timeout**: a lookup that takes longer, or throws, is an authentication failure for that login
///   (as in the original server); failures are not cached.
public final class LookupChain: Sendable {
    public struct Settings: Sendable, Equatable {
        /// How long an answer is kept (0 = not at all).
        public var cacheTTL: TimeInterval = 60
        /// How long one lookup (the whole chain) may take.
        public var timeout: TimeInterval = 5
        /// Different names being looked up at once, at most.
        public var maxInFlight: Int = 256
        /// Names cached at most (beyond it, the expired and then the oldest are dropped).
        public var maxCached: Int = 100_000

        public init() {}
    }

    /// Why a lookup gave no answer.
    public enum Failure: String, Error, Sendable, CaseIterable {
        /// A lookup threw.
        case failed
        case timedOut = "timed_out"
        /// `maxInFlight` lookups were already under way.
        case overloaded
    }

    public typealias Outcome = Result<LookupAnswer, Failure>

    /// One lookup of the chain, with the name logs and metrics know it by.
    public struct Link: Sendable {
        public let name: String
        public let lookup: any PasswordLookup
        public init(name: String, _ lookup: any PasswordLookup) {
            self.name = name
            self.lookup = lookup
        }
    }

    /// Lookups counted by outcome: `found`, `unknown`, `expired`, or a failure.
    public enum Tally: String, CaseIterable, Sendable {
        case found, unknown, expired, failed
        case timedOut = "timed_out"
        case overloaded
    }

    private struct Key: Hashable {
        let username: String
        let realm: String
    }

    private struct Entry {
        let answer: LookupAnswer
        let expires: TimeInterval
    }

    private struct State {
        var settings: Settings
        var cache: [Key: Entry] = [:]
        var inFlight: [Key: Task<Outcome, Never>] = [:]
    }

    public let links: [Link]
    private let state: Mutex<State>
    private let clock: @Sendable () -> TimeInterval
    public let outcomes = LabeledCounters<Tally>()
    public let cacheHits = StatCounter()

    /// `clock`: monotonic seconds (tests set their own to step through the TTL).
    public init(_ links: [Link], settings: Settings = Settings(),
                clock: @escaping @Sendable () -> TimeInterval = { ProcessInfo.processInfo.systemUptime }) {
        self.links = links
        self.state = Mutex(State(settings: settings))
        self.clock = clock
    }

    public var settings: Settings { state.withLock { $0.settings } }

    /// New TTL, timeout and bounds (a configuration reload); cached answers keep their expiry.
    public func update(_ settings: Settings) { state.withLock { $0.settings = settings } }

    public var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    /// The cached answer for `username`, if there is one still fresh.
    public func cached(username: String, realm: String) -> LookupAnswer? {
        let now = clock()
        let hit = state.withLock { s -> LookupAnswer? in
            guard let e = s.cache[Key(username: username, realm: realm)], e.expires > now else { return nil }
            return e.answer
        }
        if hit != nil { cacheHits.add() }
        return hit
    }

    /// Asks the chain (after the cache): the first answer that is not `.unknown`, or `.unknown`.
    public func resolve(username: String, realm: String) async -> Outcome {
        if let hit = cached(username: username, realm: realm) { return .success(hit) }
        let key = Key(username: username, realm: realm)
        let task = state.withLock { s -> Task<Outcome, Never>? in
            if let running = s.inFlight[key] { return running }
            guard s.inFlight.count < s.settings.maxInFlight else { return nil }
            let timeout = s.settings.timeout
            let task = Task { await self.run(key, timeout: timeout) }
            s.inFlight[key] = task
            return task
        }
        guard let task else {
            outcomes.add(.overloaded)
            return .failure(.overloaded)
        }
        return await task.value
    }

    private func run(_ key: Key, timeout: TimeInterval) async -> Outcome {
        let outcome = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask { await self.askLinks(key) }
            group.addTask {
                try? await Task.sleep(for: .seconds(timeout))
                return Task.isCancelled ? nil : .failure(.timedOut)
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(.timedOut)
        }
        let now = clock()
        state.withLock { s in
            s.inFlight[key] = nil
            guard case .success(let answer) = outcome, s.settings.cacheTTL > 0 else { return }
            if s.cache.count >= s.settings.maxCached { Self.prune(&s, now: now) }
            s.cache[key] = Entry(answer: answer, expires: now + s.settings.cacheTTL)
        }
        switch outcome {
        case .success(.found): outcomes.add(.found)
        case .success(.unknown): outcomes.add(.unknown)
        case .success(.expired): outcomes.add(.expired)
        case .failure(.failed): outcomes.add(.failed)
        case .failure(.timedOut): outcomes.add(.timedOut)
        case .failure(.overloaded): outcomes.add(.overloaded)
        }
        return outcome
    }

    private func askLinks(_ key: Key) async -> Outcome {
        for link in links {
            do {
                let answer = try await link.lookup.lookup(username: key.username, realm: key.realm)
                if answer != .unknown { return .success(answer) }
            } catch {
                return .failure(.failed)
            }
        }
        return .success(.unknown)
    }

    /// Forgets what the cache holds (tests; an operator's reload of the lookup settings does not).
    public func clearCache() { state.withLock { $0.cache = [:] } }

    private static func prune(_ s: inout State, now: TimeInterval) {
        s.cache = s.cache.filter { $0.value.expires > now }
        if s.cache.count >= s.settings.maxCached {
            let keep = s.cache.sorted { $0.value.expires > $1.value.expires }.prefix(s.settings.maxCached / 2)
            s.cache = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
    }

    /// Its metrics (for `/metrics`, `/api/stats` and the README's table).
    public var metrics: [Metric] {
        [
            .labeled("webrtc_auth_lookups_total", label: "result",
                     help: "password lookups of `auth.sqlite`, `auth.postgresql`, `auth.http_lookup` or a plugged-in lookup, by `result` (`found`, `unknown`, `expired`, `failed`, `timed_out`, `overloaded`); cache hits not included",
                     outcomes),
            .counter("webrtc_auth_lookup_cache_hits_total", help: "answers taken from the lookup cache", cacheHits),
            .value("webrtc_auth_lookups_in_flight", .gauge, help: "lookups under way") { self.inFlightCount },
        ]
    }
}
