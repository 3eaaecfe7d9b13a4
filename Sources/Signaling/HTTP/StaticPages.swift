import Foundation
import Hummingbird

/// Serves the example client (`examples/simple`): `index.html` at `/` and `/room/:name`, and the other
/// files of that folder under `/static/`. Names are checked, so nothing outside the folder is reachable.
enum StaticPages {
    static func add(to router: Router<SignalingRequestContext>, directory: String) {
        let root = URL(fileURLWithPath: directory, isDirectory: true)
        router.get("/") { _, _ in try file(root, "index.html") }
        router.get("room/:name") { _, _ in try file(root, "index.html") }
        router.get("static/:file") { _, context in try file(root, try context.parameters.require("file")) }
    }

    static func file(_ root: URL, _ name: String) throws -> Response {
        guard name.first != ".", name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }),
              let data = FileManager.default.contents(atPath: root.appendingPathComponent(name).path)
        else { throw HTTPError(.notFound) }
        let type = switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        default: "application/octet-stream"
        }
        return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
