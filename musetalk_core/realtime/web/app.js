// The real-time avatar page: the microphone goes to the server (WebRTC, or the WebSocket as PCM16 16 kHz), the
// avatar's frames come back. window.musetalk exposes counters (frames shown, speech/idle) for tests and curious users.
'use strict';

const $ = (id) => document.getElementById(id);
const state = window.musetalk = { state: 'idle', mode: null, frames: 0, speechFrames: 0, idleFrames: 0,
                                  ready: null, lastError: null, done: null };
const RATE = 16000, CHUNK = 320;   // 20 ms of 16 kHz audio per WebSocket message
let conn = null;                   // what stop() has to close

function status(text, error) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
  if (error) state.lastError = text;
}

function showStats() {
  $('stats').textContent = `frames ${state.frames} (speech ${state.speechFrames}, idle ${state.idleFrames})` +
    (state.ready ? ` · ${state.ready.fps.toFixed(2)} fps · lookahead ${state.ready.lookahead_ms} ms` : '');
}

async function loadAvatars() {
  const names = await (await fetch('/avatars')).json();
  const select = $('avatar');
  select.innerHTML = '';
  for (const name of names) select.add(new Option(name, name));
  if (!names.length) status('No avatars on the server: make one with python -m musetalk_core avatar ...', true);
  state.avatars = names;
}

async function microphone() {
  return navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false,
                                                        noiseSuppression: false, autoGainControl: false } });
}

// ---- WebSocket: PCM16 up, JPEG frames (8-byte header: uint32 frame number, uint8 flags, 3 reserved) down ----
const TAP = `class Tap extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor('musetalk-tap', Tap);`;

function resampler(fromRate) {   // linear, only used when the browser would not open a 16 kHz AudioContext
  if (fromRate === RATE) return (x) => x;
  let carry = 0;
  return (x) => {
    const step = fromRate / RATE, out = [];
    for (; carry < x.length - 1; carry += step) {
      const i = Math.floor(carry), f = carry - i;
      out.push(x[i] * (1 - f) + x[i + 1] * f);
    }
    carry -= x.length;
    return Float32Array.from(out);
  };
}

async function startWebSocket(avatar) {
  const canvas = $('canvas');
  canvas.hidden = false;
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?` +
                           `avatar=${encodeURIComponent(avatar)}&rate=${RATE}`);
  ws.binaryType = 'arraybuffer';
  conn = { close: () => ws.close() };   // closable at once: a refused microphone must not leave the session open
  const early = [];   // messages that come while the microphone is being opened
  ws.onmessage = (e) => early.push(e);
  const stream = await microphone();
  const ctx = new AudioContext({ sampleRate: RATE });
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: 'application/javascript' })));
  const source = ctx.createMediaStreamSource(stream), tap = new AudioWorkletNode(ctx, 'musetalk-tap');
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(tap).connect(mute).connect(ctx.destination);   // pulled by the graph, heard by nobody
  const resample = resampler(ctx.sampleRate);
  let pending = new Float32Array(0);
  tap.port.onmessage = (e) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const more = resample(e.data), joined = new Float32Array(pending.length + more.length);
    joined.set(pending);
    joined.set(more, pending.length);
    let at = 0;
    for (; at + CHUNK <= joined.length; at += CHUNK) {
      const pcm = new Int16Array(CHUNK);
      for (let i = 0; i < CHUNK; i++) pcm[i] = Math.max(-32768, Math.min(32767, joined[at + i] * 32768));
      ws.send(pcm.buffer);
    }
    pending = joined.slice(at);
  };
  const g = canvas.getContext('2d');
  const show = async (e) => {
    if (typeof e.data === 'string') return control(JSON.parse(e.data));
    const view = new DataView(e.data), idle = view.getUint8(4) & 1;
    const image = await createImageBitmap(new Blob([e.data.slice(8)], { type: 'image/jpeg' }));
    if (canvas.width !== image.width || canvas.height !== image.height) {
      canvas.width = image.width;
      canvas.height = image.height;
    }
    g.drawImage(image, 0, 0);
    image.close();
    state.frames++;
    state.lastFrame = view.getUint32(0, true);
    if (idle) state.idleFrames++; else state.speechFrames++;
    showStats();
  };
  ws.onmessage = show;
  early.forEach(show);
  ws.onclose = (e) => { if (state.state === 'running') status(`connection closed (${e.code} ${e.reason})`, true); };
  ws.onerror = () => status('WebSocket error (is the server running? is the avatar known?)', true);
  conn = { close: () => { ws.close(); stream.getTracks().forEach((t) => t.stop()); ctx.close(); } };
}

function control(message) {
  if (message.type === 'ready' || message.type === 'answer') { state.ready = message; status(`talking to ${message.avatar}`); showStats(); }
  else if (message.type === 'done') state.done = message;
  else if (message.type === 'error') status(message.message, true);
}

// ---- WebRTC: the microphone track up; the avatar's video and the delayed audio down ----
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => pc.addEventListener('icegatheringstatechange', () => {
    if (pc.iceGatheringState === 'complete') resolve();
  }));
}

async function startWebRTC(avatar) {
  const video = $('video');
  video.hidden = false;
  const pc = new RTCPeerConnection();
  const stream = await microphone();
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  pc.addTransceiver('video', { direction: 'recvonly' });
  const channel = pc.createDataChannel('control');
  channel.onmessage = (e) => control(JSON.parse(e.data));
  const remote = new MediaStream();
  pc.ontrack = (e) => { remote.addTrack(e.track); video.srcObject = remote; };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch('/offer', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, avatar }) });
  const answer = await response.json();
  if (!response.ok) {
    pc.close();
    stream.getTracks().forEach((t) => t.stop());
    throw new Error(answer.message || `the server answered ${response.status}`);
  }
  control(answer);
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  const count = () => {
    state.frames++;
    state.speechFrames = state.frames;   // WebRTC frames carry no idle flag
    showStats();
    if (state.state === 'running') video.requestVideoFrameCallback(count);
  };
  video.requestVideoFrameCallback(count);
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'failed') status('the WebRTC connection failed', true);
  };
  conn = { close: () => { pc.close(); stream.getTracks().forEach((t) => t.stop()); } };
}

async function start() {
  const avatar = $('avatar').value, mode = $('mode').value;
  if (!avatar) return status('no avatar chosen', true);
  Object.assign(state, { state: 'running', mode, frames: 0, speechFrames: 0, idleFrames: 0, ready: null,
                         lastError: null, done: null });
  $('start').disabled = true;
  $('stop').disabled = false;
  status('connecting ...');
  try {
    await (mode === 'ws' ? startWebSocket(avatar) : startWebRTC(avatar));
  } catch (err) {
    status(String(err.message || err), true);
    stop();
  }
}

function stop() {
  state.state = 'stopped';
  if (conn) conn.close();
  conn = null;
  $('start').disabled = false;
  $('stop').disabled = true;
}

$('start').onclick = start;
$('stop').onclick = stop;
loadAvatars().catch((err) => status(`cannot list the avatars: ${err}`, true));
