import Synchronization
import Testing
@testable import Signaling

/// The dashboard feed: one snapshot a second for every open stream, and a cap on the streams.
@Suite struct StatsFeedTests {
    @Test func manyStreamsAskingAtOnceShareOneSnapshot() async {
        let builds = Atomic<Int>(0)
        let feed = StatsFeed(maxAge: .seconds(60)) {
            builds.add(1, ordering: .relaxed)
            try? await Task.sleep(for: .milliseconds(50))  // a build that takes a while: callers pile up behind it
            return #"{"n":1}"#
        }
        let subscriptions = (0..<100).compactMap { _ in feed.subscribe(limit: 100) }
        #expect(subscriptions.count == 100)
        let snapshots = await withTaskGroup(of: String.self) { group in
            for s in subscriptions { group.addTask { await s.next() } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(snapshots.count == 100 && Set(snapshots) == [#"{"n":1}"#])
        #expect(builds.load(ordering: .relaxed) == 1)
    }

    @Test func aStaleSnapshotIsBuiltAgain() async {
        let builds = Atomic<Int>(0)
        let feed = StatsFeed(maxAge: .zero) { "\(builds.add(1, ordering: .relaxed).newValue)" }
        #expect(await feed.current() == "1")
        #expect(await feed.current() == "2")
    }

    @Test func streamsPastTheLimitAreRefusedUntilOneEnds() {
        let feed = StatsFeed { "" }
        var first = feed.subscribe(limit: 2)
        let second = feed.subscribe(limit: 2)
        #expect(first != nil && second != nil)
        #expect(feed.subscribe(limit: 2) == nil)
        first = nil  // its stream ended
        #expect(feed.subscribers == 1)
        #expect(feed.subscribe(limit: 2) != nil)
        _ = second
    }
}
