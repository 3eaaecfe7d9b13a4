import Foundation
import NIOCore
import Testing
@testable import Signaling

@Suite struct JSONEnvelopeTests {
    @Test func readsEventAndToAndKeepsOtherMembersVerbatim() throws {
        let e = try JSONEnvelope(#" { "event" : "offer", "to":"p\u0031", "data": {"a":[1,{"b":null}]} } "#)
        #expect(e.event == "offer")
        #expect(e.to == "p1")
        let out = String(buffer: e.forwarded(from: "me"))
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        #expect(obj["from"] as? String == "me")
        #expect(out.contains(#""data": {"a":[1,{"b":null}]}"#))
    }

    @Test func existingFromIsReplaced() throws {
        let out = String(buffer: try JSONEnvelope(#"{"from":"forged","to":"x"}"#).forwarded(from: "real\"id"))
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        #expect(obj["from"] as? String == "real\"id")
        #expect(obj.count == 2)
        // An escaped spelling of the key is the same key.
        let escaped = String(buffer: try JSONEnvelope(#"{"\u0066rom":"forged","\u0074o":"x"}"#).forwarded(from: "me"))
        #expect(escaped == #"{"from":"me","\u0074o":"x"}"#)
        #expect(try JSONEnvelope(#"{"\u0074o":"x"}"#).to == "x")
    }

    @Test(arguments: [
        "", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":tru}", "{\"a\":\"\u{01}\"}",
        "{\"a\":\"\\x\"}", "{} x", "{\"a\":[1 2]}", "{'a':1}", "{\"a\":1e}", "{\"a\":-}",
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(throws: JSONEnvelope.ParseError.self) { try JSONEnvelope(text) }
    }

    @Test func deepNestingIsRejectedNotACrash() {
        let deep = "{\"a\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        #expect(throws: JSONEnvelope.ParseError.self) { try JSONEnvelope(deep) }
    }

    @Test func nonObjectJSONIsToldApart() {
        #expect(throws: JSONEnvelope.ParseError.notAnObject) { try JSONEnvelope("[1,2]") }
        #expect(throws: JSONEnvelope.ParseError.notAnObject) { try JSONEnvelope("\"s\"") }
    }

    @Test func agreesWithFoundationOnValidDocuments() throws {
        let docs = [#"{"a":1.5E+3,"b":-0,"c":"\ud83d\ude00","d":[],"e":{},"f":false}"#, #"{}"#, #"{"to":"x","to":"y"}"#]
        for d in docs {
            let e = try JSONEnvelope(d)
            let parsed = try JSONSerialization.jsonObject(with: Data(String(buffer: e.forwarded(from: "z")).utf8)) as! [String: Any]
            #expect(parsed["from"] as? String == "z")
        }
        #expect(try JSONEnvelope(#"{"to":"x","to":"y"}"#).to == "y")
        #expect(try JSONEnvelope(#"{"event":"e","data":{"k":[1]}}"#).rawValue(of: "data") == #"{"k":[1]}"#)
    }
}
