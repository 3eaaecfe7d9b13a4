import Synchronization

/// The dashboard's live feed: one stats snapshot a second shared by every open `/dashboard/events`
/// stream, however many there are (building it walks every room and allocation), and a cap on how many
/// streams are open at once.
final class StatsFeed: Sendable {
    private struct Snapshot {
        var json: String
        var taken: ContinuousClock.Instant
    }

    private struct State {
        var subscribers = 0
        var latest: Snapshot?
        /// The snapshot being built, awaited by whoever asks meanwhile.
        var building: Task<String, Never>?
    }

    private let state = Mutex(State())
    private let build: @Sendable () async -> String
    /// A snapshot younger than this is handed out again.
    let maxAge: Duration

    init(maxAge: Duration = .milliseconds(900), build: @escaping @Sendable () async -> String) {
        self.maxAge = maxAge
        self.build = build
    }

    var subscribers: Int { state.withLock { $0.subscribers } }

    /// A place in the feed, or nil when `limit` streams are open already. The place is given back when
    /// the subscription is released (its stream ended, or its response was never written).
    func subscribe(limit: Int) -> Subscription? {
        let admitted = state.withLock { s -> Bool in
            guard s.subscribers < limit else { return false }
            s.subscribers += 1
            return true
        }
        return admitted ? Subscription(feed: self) : nil
    }

    fileprivate func unsubscribe() { state.withLock { $0.subscribers -= 1 } }

    /// The current snapshot: the shared one if it is young enough, else one built now (once for all callers).
    func current() async -> String {
        let now = ContinuousClock.now
        let task = state.withLock { s -> Task<String, Never>? in
            if let latest = s.latest, now - latest.taken < maxAge { return nil }
            if let building = s.building { return building }
            let build = self.build
            let t = Task { await build() }
            s.building = t
            return t
        }
        guard let task else { return state.withLock { $0.latest!.json } }
        let json = await task.value
        state.withLock { s in
            if s.building == task {
                s.building = nil
                s.latest = Snapshot(json: json, taken: ContinuousClock.now)
            }
        }
        return json
    }

    final class Subscription: Sendable {
        private let feed: StatsFeed
        fileprivate init(feed: StatsFeed) { self.feed = feed }
        func next() async -> String { await feed.current() }
        deinit { feed.unsubscribe() }
    }
}
