extension TurnEngine {
    /// RFC 8489 §7.3.1: answer a Binding request with the source transport address as seen here, in
    /// XOR-MAPPED-ADDRESS (and MAPPED-ADDRESS for RFC 3489-era clients). No authentication.
    func handleBinding(_ m: StunMessage, _ context: RequestContext) {
        let unknown = m.unknownRequiredAttributes
        if !unknown.isEmpty {
            respond(to: m, context, error: .unknownAttribute, integrity: nil) { $0.appendUnknownAttributes(unknown) }
            return
        }
        var r = makeResponse(to: m, error: nil)
        r.appendXorAddress(AttributeType.xorMappedAddress, context.client)
        r.append(AttributeType.mappedAddress, AddressAttribute.encode(context.client))
        _ = send(r, for: m, context, integrity: nil)
    }
}
