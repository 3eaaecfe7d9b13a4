// swift-tools-version:6.1
// An app that embeds webrtc-server as a library (WebRTCServerKit): its own user table decides logins for
// signaling and TURN, its own hook sees joins, and its own Hummingbird application serves its page next
// to the signaling endpoint. Built and exercised by scripts/test.sh (Tests/interop/test_embedded_example.py).
import PackageDescription

let package = Package(
    name: "embedded-example",
    platforms: [.macOS(.v15)],
    dependencies: [
        // In an app of your own: .package(url: "https://…/webrtc-server.git", from: "0.6.0").
        .package(name: "webrtc-server", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "embedded-app",
            dependencies: [
                .product(name: "WebRTCServerKit", package: "webrtc-server"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/EmbeddedApp"
        ),
    ]
)
