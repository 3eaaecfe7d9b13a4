// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "webrtc-server",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "webrtc-server", targets: ["webrtc-server"]),
        .library(name: "Auth", targets: ["Auth"]),
        .library(name: "StunTurn", targets: ["StunTurn"]),
        .library(name: "Signaling", targets: ["Signaling"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .target(
            name: "Auth",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "StunTurn",
            dependencies: [
                "Auth",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Signaling",
            dependencies: ["Auth"]
        ),
        .executableTarget(
            name: "webrtc-server",
            dependencies: [
                "Auth", "StunTurn", "Signaling",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(name: "AuthTests", dependencies: ["Auth"]),
        .testTarget(
            name: "StunTurnTests",
            dependencies: [
                "StunTurn", "Auth",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
