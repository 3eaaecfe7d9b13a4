// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "webrtc-server",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "webrtc-server", targets: ["webrtc-server"]),
        // The whole server as a library: WebRTCService (a ServiceLifecycle Service) from settings and plug-ins.
        .library(name: "WebRTCServerKit", targets: ["WebRTCServerKit"]),
        .library(name: "Auth", targets: ["Auth"]),
        .library(name: "StunTurn", targets: ["StunTurn"]),
        .library(name: "Signaling", targets: ["Signaling"]),
        .library(name: "Cluster", targets: ["Cluster"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // 3.x or 4.x: jwt-kit 5 needs 4.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // Default traits off: we configure through our own key table, not swift-configuration.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .target(
            name: "Auth",
            dependencies: ["ServerMetrics", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The built-in password lookups configuration can name (auth.sqlite, auth.postgresql, auth.http_lookup).
        .target(
            name: "AuthLookups",
            dependencies: [
                "Auth",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Signed join tokens (auth.jwt_keys, auth.jwks_file): JWT verification with jwt-kit.
        .target(
            name: "JoinTokens",
            dependencies: [
                "Auth",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Counters and the one declaration of every metric (/metrics, /api/stats and the README's table).
        .target(name: "ServerMetrics"),
        // The TLS contexts of the TURN and signaling listeners (one builder, re-read on SIGHUP).
        .target(
            name: "ServerTLS",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // sendmmsg and UDP_SEGMENT for the relay path's writes (Swift's Glibc module lacks them).
        .target(name: "CUDPBatch"),
        .target(
            name: "StunTurn",
            dependencies: [
                "Auth", "CUDPBatch", "ServerTLS", "ServerMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Signaling",
            dependencies: [
                "Auth", "ServerTLS", "ServerMetrics",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
        ),
        // Several instances as one over NATS (cluster.nats): the NATS client and what crosses instances.
        .target(
            name: "Cluster",
            dependencies: [
                "Auth", "Signaling", "ServerMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The composition: settings (the key table, file, environment, flags), plug-ins, operations.
        .target(
            name: "WebRTCServerKit",
            dependencies: [
                "Auth", "AuthLookups", "JoinTokens", "StunTurn", "Signaling", "Cluster", "ServerMetrics", "ServerTLS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The command-line front.
        .executableTarget(
            name: "webrtc-server",
            dependencies: [
                "WebRTCServerKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // bench/: the signaling load client (figures go to BENCHMARKS.md), on plain sockets and epoll.
        .target(name: "CEpoll", path: "bench/CEpoll"),
        .executableTarget(
            name: "signaling-load",
            dependencies: [
                "CEpoll",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "bench/signaling-load"
        ),
        // bench/: a bare UDP forwarder on NIO channels or on plain sockets: the floors (turn_bench.py --floor).
        .executableTarget(
            name: "nio-udp-floor",
            dependencies: [
                "CEpoll", "StunTurn",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "bench/nio-udp-floor"
        ),
        .testTarget(
            name: "WebRTCServerKitTests",
            dependencies: [
                "WebRTCServerKit", "SignalingTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "AuthTests", dependencies: ["Auth", "JoinTokens", .product(name: "JWTKit", package: "jwt-kit")]),
        // hummingbird-websocket's client as a test peer, and a mailbox for what callbacks deliver.
        .target(
            name: "SignalingTestSupport",
            dependencies: [
                "TurnTestSupport",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/SignalingTestSupport"
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "Cluster", "Signaling", "Auth", "StunTurn", "SignalingTestSupport", "TurnTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SignalingTests",
            dependencies: [
                "Signaling", "Auth", "StunTurn", "TurnTestSupport", "SignalingTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Blocking TURN/UDP clients for tests (public StunTurn API only), shared by the test targets.
        .target(name: "TurnTestSupport", dependencies: ["StunTurn"], path: "Tests/TurnTestSupport"),
        .testTarget(
            name: "StunTurnTests",
            dependencies: [
                "StunTurn", "Auth", "TurnTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
