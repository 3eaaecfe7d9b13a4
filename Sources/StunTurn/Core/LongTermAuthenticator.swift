import Auth

/// What the lookup chain answered for a request that waited for it.
struct ResolvedCredentials {
    let username: String
    let resolution: CredentialResolution
}

/// The long-term credential mechanism, server side (RFC 8489 §9.2.4), with the SHA-256 password
/// algorithm offered through PASSWORD-ALGORITHMS (§9.2.1-9.2.2).
struct LongTermAuthenticator {
    let realm: String
    let nonces: NonceManager
    let credentials: CredentialStore
    /// Offered in this order; MD5 first keeps clients that ignore the list working.
    static let offered: [PasswordAlgorithm] = [.md5, .sha256]

    enum Outcome {
        case authenticated(SessionCredential, MessageIntegrity.Kind)
        /// Reject. `challenge`: add REALM, NONCE and PASSWORD-ALGORITHMS (401 and 438).
        case reject(StunError, challenge: Bool)
        /// Only the lookup chain knows `username`, and its cache does not: the request waits for
        /// `CredentialStore.resolveLookingUp` and comes back with the answer (`resolved`).
        case lookupNeeded(username: String)
        /// The lookup chain failed (threw, timed out, or was full): not the client's fault.
        case lookupFailed(LookupChain.Failure)
    }

    /// `resolved`: what the lookup chain answered for this request's username (a request that waited).
    func authenticate(_ m: StunMessage, client: IPAddress, existing: SessionCredential?,
                      resolved: ResolvedCredentials? = nil) -> Outcome {
        // §9.2.4 first bullet: no integrity → 401 challenge.
        guard let kind = MessageIntegrity.kind(of: m) else { return .reject(.unauthorized, challenge: true) }
        // Missing USERNAME/USERHASH, REALM or NONCE → 400.
        guard let realmValue = m.realm, let nonce = m.nonce, m.username != nil || m.userhash != nil else {
            return .reject(.badRequest, challenge: false)
        }
        guard nonces.check(nonce, for: client) == .valid else { return .reject(.staleNonce, challenge: true) }
        // Password algorithm negotiation and downgrade protection (§9.2.4, the nonce cookie is ours).
        let algorithm: PasswordAlgorithm
        switch (m.passwordAlgorithms, m.passwordAlgorithm) {
        case (nil, nil):
            guard !m.has(AttributeType.passwordAlgorithms), !m.has(AttributeType.passwordAlgorithm) else {
                return .reject(.badRequest, challenge: false)
            }
            algorithm = .md5
        case (_?, let chosen?):
            // The list must be the one we offered byte for byte (parameters included): anything else may
            // be a downgrade by someone in the path (§9.2.4).
            guard m.attribute(AttributeType.passwordAlgorithms)?.value == StunMessage.encodePasswordAlgorithms(Self.offered),
                  let a = PasswordAlgorithm(rawValue: chosen) else {
                return .reject(.badRequest, challenge: false)
            }
            algorithm = a
        default:
            return .reject(.badRequest, challenge: false)
        }
        guard realmValue == realm else { return .reject(.unauthorized, challenge: true) }
        guard let username = resolveUsername(m) else { return .reject(.unauthorized, challenge: true) }

        if let existing {
            // Requests on an allocation use its credential (§5); another user is 441.
            guard existing.username == username else { return .reject(.wrongCredentials, challenge: false) }
            guard existing.algorithm == algorithm, MessageIntegrity.verify(m, key: existing.key) else {
                return .reject(.wrongCredentials, challenge: false)
            }
            return .authenticated(existing, kind)
        }

        let resolution = resolved.flatMap { $0.username == username ? $0.resolution : nil } ?? credentials.resolve(username)
        let candidates: [PasswordCandidate]
        switch resolution {
        case .candidates(let c): candidates = c
        case .lookupNeeded: return .lookupNeeded(username: username)
        case .lookupFailed(let failure): return .lookupFailed(failure)
        case .expired, .expiryTooFar, .unknown: return .reject(.unauthorized, challenge: true)
        }
        for candidate in candidates {
            guard let key = algorithm.key(username: username, realm: realm, secret: candidate.secret) else { continue }
            if MessageIntegrity.verify(m, key: key) {
                return .authenticated(SessionCredential(username: username, realm: realm, key: key, algorithm: algorithm,
                                                        quotaOwner: candidate.owner, session: candidate.session), kind)
            }
        }
        return .reject(.unauthorized, challenge: true)
    }

    /// USERNAME, or the static user whose USERHASH matches (§14.4).
    private func resolveUsername(_ m: StunMessage) -> String? {
        if let u = m.username { return u }
        guard let hash = m.userhash else { return nil }
        return credentials.staticUsernames.first { userHash(username: $0, realm: realm) == hash }
    }

    /// The attributes of a challenge: REALM, NONCE, PASSWORD-ALGORITHMS (§9.2.4).
    func addChallenge(to response: inout StunMessage, client: IPAddress) {
        response.appendText(AttributeType.realm, realm)
        response.appendText(AttributeType.nonce, nonces.make(for: client))
        response.append(AttributeType.passwordAlgorithms, StunMessage.encodePasswordAlgorithms(Self.offered))
    }
}
