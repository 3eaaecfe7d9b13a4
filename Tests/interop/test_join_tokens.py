"""Signed join tokens minted by PyJWT (PyPI): HS256 with several keys, ES256 and EdDSA from a JWKS file;
every way a token can be wrong gets `unauthorized` with its reason; keys rotate on SIGHUP; what a token
says about its holder (name, metadata) reaches the others, and what it permits is enforced."""
import asyncio
import json
import signal
import time

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from conftest import free_port, turn_server_args
from test_operations import wait_for_log

ROOM = "tokens"


def mint(claims=None, key="first-secret-of-at-least-32-bytes", kid="k1", algorithm="HS256", **changes):
    now = int(time.time())
    body = {"sub": "alice", "room": ROOM, "exp": now + 60, **(claims or {})}
    body.update(changes)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


async def login(port, token, room=ROOM):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/websocket/{room}")
    await ws.send(json.dumps({"event": "authenticate", "data": {"token": token}}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 10))


def answer(port, token, room=ROOM):
    async def once():
        ws, first = await login(port, token, room)
        await ws.close()
        return first
    return asyncio.run(once())


def jwks(*keys):
    """A JWKS document of public keys: (kid, key object)."""
    out = []
    for kid, key in keys:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()) if isinstance(key, ec.EllipticCurvePrivateKey)
                         else jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "EdDSA"})
        out.append(jwk)
    return json.dumps({"keys": out})


@pytest.fixture
def keys(tmp_path):
    es = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    path.write_text(jwks(("es", es), ("ed", ed)))
    return {"es": es, "ed": ed, "jwks": path}


@pytest.fixture
def server(start_server, keys, tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text(f'auth:\n  users: {{carol: "pw"}}\n  jwt_keys: {{k1: "first-secret-of-at-least-32-bytes", k2: "second-secret-of-at-least-32-bytes"}}\n'
                      f'  jwks_file: "{keys["jwks"]}"\n  token_leeway: 5\n')
    s = start_server("--config", str(config), *turn_server_args(free_port()))
    s.config = config
    return s


def test_valid_tokens_of_each_kind_log_in_and_passwords_still_work(server, keys):
    for token in (mint(), mint(kid="k2", key="second-secret-of-at-least-32-bytes"), mint(kid=None, key="second-secret-of-at-least-32-bytes"),
                  mint(kid="es", key=keys["es"], algorithm="ES256"), mint(kid="ed", key=keys["ed"], algorithm="EdDSA")):
        first = answer(server.signaling_port, token)
        assert first["event"] == "authenticated", (jwt.get_unverified_header(token), first)
        assert any(u.startswith("turn:") for e in first["data"]["ice_servers"] for u in e["urls"])
    # A clock a little behind the issuer's: inside the leeway.
    assert answer(server.signaling_port, mint(nbf=int(time.time()) + 3))["event"] == "authenticated"
    assert answer(server.signaling_port, mint(exp=int(time.time()) - 3))["event"] == "authenticated"

    async def password():
        async with websockets.connect(f"ws://127.0.0.1:{server.signaling_port}/websocket/{ROOM}") as ws:
            await ws.send(json.dumps({"event": "authenticate", "data": {"username": "carol", "password": "pw"}}))
            return json.loads(await ws.recv())["event"]
    assert asyncio.run(password()) == "authenticated"


@pytest.mark.parametrize("make,reason", [
    (lambda k: mint(room="another-room"), "token_wrong_room"),
    (lambda k: mint(exp=int(time.time()) - 60), "token_expired"),
    (lambda k: mint(exp=None), "token_expired"),
    (lambda k: mint(nbf=int(time.time()) + 60), "token_not_yet_valid"),
    (lambda k: mint(key="not-a-configured-key-but-long-enough"), "token_signature"),
    (lambda k: mint(kid=None, key="not-a-configured-key-but-long-enough"), "token_signature"),
    (lambda k: mint(kid="es", key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"), "token_signature"),
    (lambda k: jwt.encode({"sub": "alice", "room": ROOM, "exp": int(time.time()) + 60}, None, algorithm="none"), "token_signature"),
    (lambda k: tampered(mint()), "token_signature"),
    (lambda k: mint(sub=None), "token_no_subject"),
    (lambda k: "not.a.token", "token_malformed"),
], ids=["wrong-room", "expired", "no-exp", "not-yet-valid", "wrong-key", "wrong-key-no-kid", "wrong-es256-key", "alg-none",
        "tampered", "no-sub", "malformed"])
def test_every_bad_token_is_unauthorized_with_its_reason(server, keys, make, reason):
    first = answer(server.signaling_port, make(keys))
    assert first == {"event": "unauthorized", "data": {"reason": reason}}, first


def tampered(token):
    """The same signature over a payload with another `sub`."""
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "mallory"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def test_a_single_use_token_logs_in_once(server):
    token = mint(jti="one-time-1")
    assert answer(server.signaling_port, token)["event"] == "authenticated"
    assert answer(server.signaling_port, token) == {"event": "unauthorized", "data": {"reason": "token_reused"}}
    assert answer(server.signaling_port, mint(jti="one-time-2"))["event"] == "authenticated"


def test_name_and_metadata_reach_the_others_and_permissions_are_enforced(server):
    metadata = {"avatar": "https://example.com/a.png", "role": "host", "tags": [1, 2]}

    async def scenario():
        alice, first = await login(server.signaling_port, mint(name="Alice A.", metadata=metadata))
        assert first["event"] == "authenticated", first
        bob, welcome = await login(server.signaling_port, mint(sub="bob", permissions={"broadcast": False, "turn": False}))
        assert welcome["event"] == "authenticated", welcome
        # Bob's roster shows Alice's name and metadata; Bob got no TURN credentials.
        [seen] = welcome["data"]["peers"]
        assert seen["name"] == "Alice A." and seen["metadata"] == metadata, seen
        urls = [u for e in welcome["data"]["ice_servers"] for u in e["urls"]]
        assert urls and not any(u.startswith(("turn:", "turns:")) for u in urls), welcome
        assert all("credential" not in e for e in welcome["data"]["ice_servers"])
        joined = json.loads(await asyncio.wait_for(alice.recv(), 10))
        assert joined["event"] == "joined" and joined["data"]["username"] == "bob" and "metadata" not in joined["data"], joined
        # Bob may not broadcast (the socket stays open); he may still send to Alice.
        await bob.send(json.dumps({"event": "hello", "to": "*", "data": {}}))
        refused = json.loads(await asyncio.wait_for(bob.recv(), 10))
        assert refused["event"] == "error" and refused["data"]["code"] == "not_permitted", refused
        await bob.send(json.dumps({"event": "hello", "to": first["data"]["peer_id"], "data": {"x": 1}}))
        got = json.loads(await asyncio.wait_for(alice.recv(), 10))
        assert got["event"] == "hello" and got["data"] == {"x": 1}, got
        # A newcomer sees Alice's metadata in `joined` too.
        carol, _ = await login(server.signaling_port, mint(sub="carol", name="C"))
        seen_by_alice = json.loads(await asyncio.wait_for(alice.recv(), 10))
        assert seen_by_alice["event"] == "joined" and seen_by_alice["data"]["name"] == "C", seen_by_alice
        for ws in (alice, bob, carol):
            await ws.close()
    asyncio.run(scenario())


def test_keys_rotate_on_sighup(server, keys):
    new_es = ec.generate_private_key(ec.SECP256R1())
    assert answer(server.signaling_port, mint(kid="k3", key="third-secret-of-at-least-32-bytes!"))["data"]["reason"] == "token_signature"
    assert answer(server.signaling_port, mint(kid="new", key=new_es, algorithm="ES256"))["data"]["reason"] == "token_signature"
    keys["jwks"].write_text(jwks(("new", new_es)))
    server.config.write_text(f'auth:\n  users: {{carol: "pw"}}\n  jwt_keys: {{k3: "third-secret-of-at-least-32-bytes!"}}\n'
                             f'  jwks_file: "{keys["jwks"]}"\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log(server, "reload: join token keys applied")
    assert answer(server.signaling_port, mint(kid="k3", key="third-secret-of-at-least-32-bytes!"))["event"] == "authenticated"
    assert answer(server.signaling_port, mint(kid="new", key=new_es, algorithm="ES256"))["event"] == "authenticated"
    # The keys taken out no longer verify anything.
    assert answer(server.signaling_port, mint())["data"]["reason"] == "token_signature"
    assert answer(server.signaling_port, mint(kid="es", key=keys["es"], algorithm="ES256"))["data"]["reason"] == "token_signature"


def test_token_only_refuses_passwords_and_no_keys_refuses_tokens(start_server):
    only = start_server(*turn_server_args(free_port(), "--auth.methods", "token", "--auth.jwt_keys", "k1=first-secret-of-at-least-32-bytes",
                                          "--auth.users", "carol=pw"))
    assert "log in as 'demo'" not in only.output, "a token key is a way to log in"

    async def password(port):
        async with websockets.connect(f"ws://127.0.0.1:{port}/websocket/{ROOM}") as ws:
            await ws.send(json.dumps({"event": "authenticate", "data": {"username": "carol", "password": "pw"}}))
            return json.loads(await ws.recv())
    assert asyncio.run(password(only.signaling_port))["event"] == "unauthorized"
    assert answer(only.signaling_port, mint())["event"] == "authenticated"
    none = start_server(*turn_server_args(free_port(), "--auth.users", "carol=pw"))
    assert answer(none.signaling_port, mint()) == {"event": "unauthorized", "data": {"reason": "token_not_accepted"}}
