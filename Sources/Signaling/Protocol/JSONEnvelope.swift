import Foundation
import NIOCore

/// A signaling frame `{event, data, to?, from?}` read without building a tree: one validating pass over
/// the bytes records where each top-level member lies and decodes only the `event` and `to` strings.
/// `event` and `data` stay opaque; forwarding re-emits the members verbatim with `from` set, so the server
/// neither reorders nor re-encodes what clients send.
public struct JSONEnvelope: Sendable {
    public enum ParseError: Error, Equatable, Sendable {
        /// Not JSON at all (or trailing garbage, or nested deeper than `maxDepth`).
        case invalidJSON(String)
        /// Valid JSON, but not an object.
        case notAnObject
    }

    public static let maxDepth = 64

    public let bytes: [UInt8]
    /// Byte ranges of each top-level member (`"key": value`) and of its key's contents (undecoded).
    private(set) var members: [(key: Range<Int>, range: Range<Int>)] = []
    public private(set) var event: String?
    public private(set) var to: String?

    public init(_ text: String) throws(ParseError) {
        try self.init(bytes: Array(text.utf8))
    }

    public init(bytes: [UInt8]) throws(ParseError) {
        self.bytes = bytes
        var scanner = JSONScanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "{") else {
            // Tell "some other JSON value" from "not JSON".
            try scanner.value(depth: 0)
            scanner.skipWhitespace()
            guard scanner.atEnd else { throw .invalidJSON(scanner.error("trailing characters")) }
            throw .notAnObject
        }
        var members: [(key: Range<Int>, range: Range<Int>)] = []
        members.reserveCapacity(4)  // event, to, data, from: one allocation for the usual message
        var event: String?, to: String?
        try scanner.object(depth: 0) { key, member, value in
            members.append((key, member))
            let isEvent = Self.key(bytes, key, is: "event"), isTo = !isEvent && Self.key(bytes, key, is: "to")
            if isEvent || isTo {
                let decoded = bytes[value.lowerBound] == UInt8(ascii: "\"")
                    ? JSONScanner.decodeString(bytes, (value.lowerBound + 1)..<(value.upperBound - 1)) : nil
                if isEvent { event = decoded } else { to = decoded }
            }
        }
        self.members = members
        self.event = event
        self.to = to
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw .invalidJSON(scanner.error("trailing characters")) }
    }

    /// True when the key's contents are `name` (escaped keys are decoded first).
    static func key(_ bytes: [UInt8], _ range: Range<Int>, is name: String) -> Bool {
        if bytes[range].contains(UInt8(ascii: "\\")) { return JSONScanner.decodeString(bytes, range) == name }
        return bytes[range].elementsEqual(name.utf8)
    }

    /// The same object with `from` set to `peerID` (an existing `from` is replaced, never trusted),
    /// written once into the buffer the frame will carry, `headroom` bytes free in front of it.
    public func forwarded(from peerID: String, headroom: Int = 0) -> ByteBuffer {
        forwarded(prefix: Self.fromPrefix(peerID), headroom: headroom)
    }

    /// `{"from":"<peerID>"`: what every message a peer sends starts with once forwarded (a session
    /// builds it once).
    public static func fromPrefix(_ peerID: String) -> [UInt8] {
        var prefix = Array(#"{"from":"#.utf8)
        JSONText.appendString(peerID, to: &prefix)
        return prefix
    }

    /// `forwarded(from:headroom:)` with the `from` member already encoded by `fromPrefix(_:)`.
    public func forwarded(prefix: [UInt8], headroom: Int = 0) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(headroom + bytes.count + prefix.count + 1)
        out.moveWriterIndex(forwardBy: headroom)
        out.moveReaderIndex(forwardBy: headroom)
        out.writeBytes(prefix)
        for m in members where !Self.key(bytes, m.key, is: "from") {
            out.writeInteger(UInt8(ascii: ","))
            out.writeBytes(bytes[m.range])
        }
        out.writeInteger(UInt8(ascii: "}"))
        return out
    }

    /// The raw JSON text of member `key`'s value, if present.
    public func rawValue(of key: String) -> String? {
        guard let m = members.last(where: { Self.key(bytes, $0.key, is: key) }) else { return nil }
        var scanner = JSONScanner(bytes: Array(bytes[m.range]))
        _ = try? scanner.string()
        scanner.skipWhitespace()
        scanner.index += 1  // ':'
        scanner.skipWhitespace()
        return String(decoding: scanner.bytes[scanner.index...], as: UTF8.self)
    }
}

/// RFC 8259 syntax, checked byte by byte.
struct JSONScanner {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index >= bytes.count }
    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }
    func error(_ what: String) -> String { "\(what) at byte \(index)" }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func value(depth: Int) throws(JSONEnvelope.ParseError) {
        guard depth <= JSONEnvelope.maxDepth else { throw .invalidJSON(error("nested too deeply")) }
        guard let c = peek() else { throw .invalidJSON(error("unexpected end")) }
        switch c {
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "{"): try object(depth: depth) { _, _, _ in }
        case UInt8(ascii: "["):
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "]") { index += 1; return }
            while true {
                skipWhitespace()
                try value(depth: depth + 1)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { index += 1; continue }
                guard peek() == UInt8(ascii: "]") else { throw .invalidJSON(error("expected ',' or ']'")) }
                index += 1
                return
            }
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        default: throw .invalidJSON(error("unexpected character"))
        }
    }

    /// An object starting at `{`; `member(key contents, whole member, value)` is called for each member.
    mutating func object(depth: Int, member: (Range<Int>, Range<Int>, Range<Int>) -> Void) throws(JSONEnvelope.ParseError) {
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { index += 1; return }
        while true {
            skipWhitespace()
            let start = index
            guard peek() == UInt8(ascii: "\"") else { throw .invalidJSON(error("expected a member name")) }
            let key = try string()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw .invalidJSON(error("expected ':'")) }
            index += 1
            skipWhitespace()
            let valueStart = index
            try value(depth: depth + 1)
            member(key, start..<index, valueStart..<index)
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { index += 1; continue }
            guard peek() == UInt8(ascii: "}") else { throw .invalidJSON(error("expected ',' or '}'")) }
            index += 1
            return
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONEnvelope.ParseError) {
        let n = word.utf8CodeUnitCount
        guard index + n <= bytes.count else { throw .invalidJSON(error("unexpected end")) }
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: n)
        for i in 0..<n where bytes[index + i] != expected[i] { throw .invalidJSON(error("invalid literal")) }
        index += n
    }

    mutating func number() throws(JSONEnvelope.ParseError) {
        func digits(_ s: inout JSONScanner) -> Int {
            let start = s.index
            while let c = s.peek(), c >= 0x30, c <= 0x39 { s.index += 1 }
            return s.index - start
        }
        if peek() == UInt8(ascii: "-") { index += 1 }
        if peek() == UInt8(ascii: "0") {
            index += 1
        } else {
            guard digits(&self) > 0 else { throw .invalidJSON(error("invalid number")) }
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard digits(&self) > 0 else { throw .invalidJSON(error("invalid number")) }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard digits(&self) > 0 else { throw .invalidJSON(error("invalid number")) }
        }
    }

    /// Scans a string starting at the opening quote; returns the range of its contents.
    mutating func string() throws(JSONEnvelope.ParseError) -> Range<Int> {
        index += 1
        let start = index
        while index < bytes.count {
            let c = bytes[index]
            switch c {
            case UInt8(ascii: "\""):
                index += 1
                return start..<(index - 1)
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { throw .invalidJSON(error("unexpected end")) }
                switch bytes[index + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 2
                case UInt8(ascii: "u"):
                    guard index + 6 <= bytes.count,
                          bytes[(index + 2)..<(index + 6)].allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
                    else { throw .invalidJSON(error("invalid \\u escape")) }
                    index += 6
                default: throw .invalidJSON(error("invalid escape"))
                }
            case 0x00..<0x20: throw .invalidJSON(error("control character in string"))
            default: index += 1
            }
        }
        throw .invalidJSON(error("unterminated string"))
    }

    /// Decodes a validated string's contents (the common case has no escapes).
    static func decodeString(_ bytes: [UInt8], _ range: Range<Int>) -> String {
        if !bytes[range].contains(UInt8(ascii: "\\")) { return String(decoding: bytes[range], as: UTF8.self) }
        let quoted = [UInt8(ascii: "\"")] + bytes[range] + [UInt8(ascii: "\"")]
        return (try? JSONDecoder().decode(String.self, from: Data(quoted))) ?? String(decoding: bytes[range], as: UTF8.self)
    }
}

/// Writing JSON text by hand for the few events the server itself emits.
public enum JSONText {
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 0xF)]])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    public static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        appendString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
