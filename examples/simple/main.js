// webrtc-server example client: joins a room over the signaling WebSocket, takes ICE servers
// (with per-session TURN credentials) from `authenticated`, and opens one RTCPeerConnection per
// other peer (a mesh). Offers and answers follow "perfect negotiation", so two peers that start
// negotiating at once never deadlock: the polite one rolls back, the impolite one carries on.
// When the signaling socket drops (network change, a proxy restart) it reconnects with backoff and
// resumes its session (same id, the messages it missed replayed), keeping its calls and video; only a
// connection that actually failed is renegotiated (an ICE restart). If the session cannot be resumed (a
// restarted server) it logs in afresh and builds the mesh again under its new id.
'use strict';

const params = new URLSearchParams(location.search);
const pathRoom = location.pathname.match(/^\/room\/([^/]+)/);
const room = pathRoom ? decodeURIComponent(pathRoom[1]) : (params.get('room') || 'lobby');
document.getElementById('room-name').textContent = room;

const peers = new Map();      // peer_id -> { pc, polite, makingOffer, ignoreOffer, username, figure }
let socket = null;
let myId = null;
let iceServers = [];
let relayOnly = false;
let localStream = null;
let login = null;                 // { username, password }, kept for reconnecting
let reconnectDelay = 1000;        // ms; doubles up to RECONNECT_MAX while the server cannot be reached
const RECONNECT_MAX = 10000;
let stayAway = null;              // why not to reconnect (kicked, replaced, wrong password, room full...)
let sessions = 0;                 // authenticated sessions so far (more than one after a reconnect)
let resumes = 0;                  // sessions resumed after a dropped socket
let resumeToken = null;           // from authenticated/resumed: takes the session back after a drop
const received = {};  // messages by event, for webrtcSummary()
const pendingNames = new Map();  // roster names, until those peers' offers arrive

const setStatus = (text) => { document.getElementById('status').textContent = text; };

function send(event, to, data) {
  // While reconnecting there is no one to tell; the new session negotiates afresh.
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ event, to, data }));
}

function videoFor(peerId, username) {
  const figure = document.createElement('figure');
  figure.dataset.peer = peerId;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  const caption = document.createElement('figcaption');
  caption.textContent = username || peerId;
  figure.append(video, caption);
  document.getElementById('videos').append(figure);
  return figure;
}

// `?ice=udp|tcp|turns` keeps only that kind of TURN URL (to try one transport, e.g. behind a firewall).
function onlyTransport(servers, kind) {
  if (!kind) return servers;
  const keep = (url) => (kind === 'turns' ? url.startsWith('turns:') : url.startsWith('turn:') && url.endsWith(`transport=${kind}`));
  return servers
    .map((s) => ({ ...s, urls: [].concat(s.urls).filter(keep) }))
    .filter((s) => s.urls.length > 0);
}

function createPeer(peerId, username) {
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
  // Politeness must differ between the two ends; comparing ids gives both the same answer.
  const peer = { pc, polite: myId < peerId, makingOffer: false, ignoreOffer: false, username, figure: videoFor(peerId, username) };
  peers.set(peerId, peer);

  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);

  pc.onnegotiationneeded = async () => {
    try {
      peer.makingOffer = true;
      await pc.setLocalDescription();
      send(pc.localDescription.type, peerId, { description: pc.localDescription });
    } catch (err) {
      console.error('negotiation with', peerId, err);
    } finally {
      peer.makingOffer = false;
    }
  };
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) send('candidate', peerId, { candidate });
  };
  pc.ontrack = ({ streams }) => {
    const video = peer.figure.querySelector('video');
    if (video.srcObject !== streams[0]) video.srcObject = streams[0];
  };
  pc.onconnectionstatechange = () => {
    // A path that failed (while signaling was away, or since) is renegotiated once signaling is back.
    if (pc.connectionState === 'failed' && socket && socket.readyState === WebSocket.OPEN) pc.restartIce();
    render();
  };
  return peer;
}

async function onDescription(from, description) {
  const peer = peers.get(from) || createPeer(from, pendingNames.get(from));
  const { pc } = peer;
  const collision = description.type === 'offer' && (peer.makingOffer || pc.signalingState !== 'stable');
  peer.ignoreOffer = !peer.polite && collision;
  if (peer.ignoreOffer) return;
  await pc.setRemoteDescription(description);   // a polite peer rolls its own offer back implicitly
  if (description.type === 'offer') {
    await pc.setLocalDescription();
    send('answer', from, { description: pc.localDescription });
  }
}

async function onCandidate(from, candidate) {
  const peer = peers.get(from);
  if (!peer) return;
  try {
    await peer.pc.addIceCandidate(candidate);
  } catch (err) {
    if (!peer.ignoreOffer) console.error('candidate from', from, err);
  }
}

function removePeer(peerId) {
  const peer = peers.get(peerId);
  if (!peer) return;
  peer.pc.close();
  peer.figure.remove();
  peers.delete(peerId);
  render();
}

function render() {
  const states = [...peers.entries()].map(([id, p]) => `${p.username || id}: ${p.pc.connectionState}`);
  setStatus(`${myId ? 'in room as ' + myId : 'connecting'}${relayOnly ? ' (relay only)' : ''}; ${states.join(', ') || 'alone'}`);
}

// Errors after which coming back would only be refused again.
const FINAL_ERRORS = new Set(['kicked', 'replaced', 'room_full', 'rate_limited']);

const handlers = {
  authenticated(data) {
    // After a reconnect the old calls belong to the old session: its TURN credentials are revoked and
    // the others were told it left. Drop them; the room's peers offer to the new id as to any newcomer.
    for (const id of [...peers.keys()]) removePeer(id);
    pendingNames.clear();
    sessions += 1;
    reconnectDelay = 1000;
    myId = data.peer_id;
    resumeToken = data.resume_token || null;
    iceServers = onlyTransport(data.ice_servers || [], params.get('ice'));
    // The peers already in the room heard `joined` and start the connections to us; their offers
    // create ours (one per message, so a newcomer in a big room does not start them all at once).
    // Perfect negotiation still settles any offers that cross.
    for (const p of data.peers || []) pendingNames.set(p.peer_id, p.username);
    render();
  },
  resumed(data) {
    // Same id, same calls: the messages missed while away follow this event, in order.
    resumes += 1;
    reconnectDelay = 1000;
    resumeToken = data.resume_token;
    const present = new Set((data.peers || []).map((p) => p.peer_id));
    for (const id of [...peers.keys()]) if (!present.has(id)) removePeer(id);
    for (const peer of peers.values()) if (peer.pc.connectionState === 'failed') peer.pc.restartIce();
    render();
  },
  peer_away() { render(); },
  peer_back() { render(); },
  joined(data) {
    if (!peers.has(data.peer_id)) createPeer(data.peer_id, data.username);
    render();
  },
  left(data) { removePeer(data.peer_id); },
  offer(data, from) { return onDescription(from, data.description); },
  answer(data, from) { return onDescription(from, data.description); },
  candidate(data, from) { return onCandidate(from, data.candidate); },
  unauthorized(data) {
    stayAway = data.reason === 'blocked' ? `too many failed logins, retry in ${data.retry_after} s` : 'wrong user or password';
    setStatus(stayAway);
  },
  error(data) {
    if (data.code === 'resume_failed') {
      // The session is gone (the window ended, or a restarted server): log in afresh on this socket.
      resumeToken = null;
      socket.send(JSON.stringify({ event: 'authenticate', data: login }));
      return;
    }
    console.warn('server error', data);
    if (FINAL_ERRORS.has(data.code)) stayAway = `${data.code}: ${data.message}`;
    setStatus(`error: ${data.code}: ${data.message}`);
  },
  shutdown() { setStatus('the server is restarting; calls go on, reconnecting'); },
};

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/websocket/${encodeURIComponent(room)}`);
  socket = ws;
  ws.onopen = () => ws.send(JSON.stringify(resumeToken
    ? { event: 'resume', data: { token: resumeToken } }
    : { event: 'authenticate', data: login }));
  ws.onmessage = async ({ data }) => {
    if (data === 'pong') return;
    const message = JSON.parse(data);
    received[message.event] = (received[message.event] || 0) + 1;
    const handler = handlers[message.event];
    if (!handler) return console.log('unhandled', message);
    try {
      await handler(message.data || {}, message.from);
    } catch (err) {
      console.error(message.event, err);
    }
  };
  ws.onclose = () => {
    if (stayAway) {
      for (const id of [...peers.keys()]) removePeer(id);
      setStatus(`disconnected: ${stayAway}`);
      return;
    }
    // Calls already up are left alone: the session is held for the server's resume window, with its TURN
    // allocations, so direct and relayed media keep flowing while signaling reconnects.
    setStatus(`signaling lost; reconnecting in ${reconnectDelay / 1000} s`);
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX);
  };
}

async function join(username, password) {
  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById('local-video').srcObject = localStream;
  login = { username, password };
  connect();
  // Text ping keeps proxies from closing an idle socket.
  setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('ping'), 20000);
}

// For automated checks: one summary per remote peer from getStats().
window.webrtcSummary = async () => {
  const out = [];
  for (const [id, peer] of peers) {
    const stats = await peer.pc.getStats();
    let framesDecoded = 0;
    let pair = null;
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded += s.framesDecoded || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    const local = pair && byId.get(pair.localCandidateId);
    const remote = pair && byId.get(pair.remoteCandidateId);
    out.push({
      peer: id,
      connectionState: peer.pc.connectionState,
      signalingState: peer.pc.signalingState,
      iceGatheringState: peer.pc.iceGatheringState,
      framesDecoded,
      localCandidateType: local ? local.candidateType : null,
      remoteCandidateType: remote ? remote.candidateType : null,
      relayProtocol: local ? local.relayProtocol || null : null,
      localAddress: local ? `${local.address}:${local.port}` : null,
    });
  }
  return { myId, sessions, resumes, relayOnly, iceServers, peers: out, received };
};

document.getElementById('username').value = params.get('user') || '';
document.getElementById('password').value = params.get('password') || '';
document.getElementById('relay-only').checked = params.get('relay') === '1';
document.getElementById('join').addEventListener('submit', (e) => {
  e.preventDefault();
  relayOnly = document.getElementById('relay-only').checked;
  document.getElementById('join').hidden = true;
  join(document.getElementById('username').value, document.getElementById('password').value)
    .catch((err) => setStatus(`could not start: ${err.message}`));
});
if (params.get('autojoin') === '1') document.getElementById('join').requestSubmit();
