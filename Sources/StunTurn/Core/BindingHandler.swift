extension TurnCore {
    /// RFC 8489 §7.3.1: answer a Binding request with the source transport address as seen here, in
    /// XOR-MAPPED-ADDRESS (and MAPPED-ADDRESS for RFC 3489-era clients). No authentication.
    func handleBinding(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        let unknown = m.unknownRequiredAttributes
        if !unknown.isEmpty {
            return [reply(to: m, request, error: .unknownAttribute, integrity: nil) { $0.appendUnknownAttributes(unknown) }]
        }
        var r = response(to: m)
        r.appendXorAddress(AttributeType.xorMappedAddress, request.client)
        r.append(AttributeType.mappedAddress, AddressAttribute.encode(request.client))
        return [reply(r, to: m, request, integrity: nil)]
    }
}
