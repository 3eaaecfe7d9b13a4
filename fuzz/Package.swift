// swift-tools-version:6.1
// libFuzzer targets: TurnFuzz over the STUN/ChannelData decoder and the TURN request handler,
// SignalingFuzz over the signaling WebSocket (framing, session, JSON envelope). Built and run by
// fuzz/run.sh (`-sanitize=fuzzer,address`, its own scratch folder); not part of the main build.
import PackageDescription

let package = Package(
    name: "turn-fuzz",
    dependencies: [
        .package(name: "webrtc-server", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "TurnFuzz",
            dependencies: [
                "FuzzDriver",
                .product(name: "StunTurn", package: "webrtc-server"),
                .product(name: "Auth", package: "webrtc-server"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "SignalingFuzz",
            dependencies: [
                "FuzzDriver",
                .product(name: "Signaling", package: "webrtc-server"),
                .product(name: "Auth", package: "webrtc-server"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
