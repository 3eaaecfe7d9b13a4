import Auth
import Foundation
import Testing

@Suite struct CredentialStoreTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func store(users: [String: String] = [:], secrets: [String] = []) -> CredentialStore {
        let fixed = now
        return CredentialStore(.init(users: users, sharedSecrets: secrets), clock: { fixed })
    }

    @Test func staticUserIsFoundWithItsPassword() {
        let s = store(users: ["alice": "wonder"])
        #expect(s.lookup("alice") == .passwords(["wonder"]))
        #expect(s.verify(username: "alice", password: "wonder"))
        #expect(!s.verify(username: "alice", password: "wander"))
        #expect(s.lookup("bob") == .unknown)
    }

    @Test func ephemeralPasswordIsBase64HmacSha1OfTheUsername() {
        // HMAC-SHA1(key "north", "1800003600:carol") computed independently with Python's hmac module.
        let name = "1800003600:carol"
        #expect(EphemeralCredential.password(username: name, secret: "north") == "u7YfV7gmTmXvmL/YWFGgPw2NOtQ=")
        let s = store(secrets: ["north"])
        #expect(s.verify(username: name, password: "u7YfV7gmTmXvmL/YWFGgPw2NOtQ="))
        #expect(!s.verify(username: name, password: "u7YfV7gmTmXvmL/YWFGgPw2NOtR="))
    }

    @Test func expiredEphemeralCredentialIsRefused() {
        let s = store(secrets: ["north"])
        let name = "1799999999:carol"
        #expect(s.lookup(name) == .expired)
        #expect(!s.verify(username: name, password: EphemeralCredential.password(username: name, secret: "north")))
    }

    @Test func everyConfiguredSecretVerifiesSoSecretsCanRotate() {
        let s = store(secrets: ["new", "old"])
        let name = "1800003600:dave"
        #expect(s.verify(username: name, password: EphemeralCredential.password(username: name, secret: "old")))
        #expect(s.verify(username: name, password: EphemeralCredential.password(username: name, secret: "new")))
        #expect(!s.verify(username: name, password: EphemeralCredential.password(username: name, secret: "other")))
    }

    @Test func staticAndEphemeralCredentialsWorkTogether() {
        let s = store(users: ["alice": "wonder"], secrets: ["north"])
        let minted = s.mintEphemeral(user: "erin", lifetime: 3600)!
        #expect(minted.username == "1800003600:erin")
        #expect(s.verify(username: minted.username, password: minted.password))
        #expect(s.verify(username: "alice", password: "wonder"))
    }

    @Test func withoutSecretsATimestampNameIsJustAnUnknownUser() {
        let s = store(users: ["alice": "wonder"])
        #expect(s.lookup("1800003600:carol") == .unknown)
        #expect(s.mintEphemeral(user: "x", lifetime: 60) == nil)
    }

    @Test func updateReplacesUsersAndSecrets() {
        let s = store(users: ["alice": "wonder"], secrets: ["north"])
        s.update(.init(users: ["bob": "builder"], sharedSecrets: ["south"]))
        #expect(s.lookup("alice") == .unknown)
        #expect(s.verify(username: "bob", password: "builder"))
        let name = "1800003600:carol"
        #expect(!s.verify(username: name, password: EphemeralCredential.password(username: name, secret: "north")))
    }
}
