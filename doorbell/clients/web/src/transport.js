// One MQTT v5 connection over TLS WebSockets as the owner (MQTT.js). The same topics and
// signed messages as `doorbell owner` (doorbell/core/protocol.py); the broker's ACL limits
// this account to the owner's own tree and own devices.
import mqtt from "mqtt/dist/mqtt.esm";
import { randomHex } from "./canonical.js";

export const PREFIX = "doorbell/v1";
const SESSION_EXPIRY_S = 30 * 86400; // as doorbell/clients/owner/app.py CLIP_SESSION_EXPIRY_S

export class Transport extends EventTarget {
  constructor({ url, username, password, ownerId, holdAck = null }) {
    super();
    // holdAck(topic, payload): a Promise to wait for before a QoS 1 message is acknowledged (the
    // clip index keeps an announcement on disk first, so a tab closed mid-way loses nothing), or null
    this.holdAck = holdAck;
    this.ownerId = ownerId;
    this.url = url;
    this.username = username;
    this.password = password;
    this.waiters = new Map(); // topic -> resolve
    this.client = null;
  }

  get owner() { return `${PREFIX}/owners/${this.ownerId}`; }

  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const c = mqtt.connect(this.url, {
        username: this.username, password: this.password, protocolVersion: 5,
        clientId: this.username, reconnectPeriod: 2000, // the broker binds a session to its login
        connectTimeout: timeoutMs, resubscribe: true,
        // A persistent session, as the CLI's: the broker queues the devices' QoS 1 clip announcements
        // (and the owner tree) while the app is closed, for this browser's own clip index; live
        // events, status and snapshots are subscribed at QoS 0, which the broker does not queue.
        clean: false, properties: { sessionExpiryInterval: SESSION_EXPIRY_S },
        customHandleAcks: (topic, payload, _packet, ack) => {
          const held = this.holdAck && this.holdAck(topic, payload);
          if (!held) return ack(0);
          held.then(() => ack(0), (err) => { console.warn("acknowledged without keeping it:", topic, err); ack(0); });
        },
      });
      this.client = c;
      let settled = false;
      const timer = setTimeout(() => { if (!settled) { settled = true; c.end(true); reject(new Error(`no answer from the broker at ${this.url}`)); } }, timeoutMs);
      c.on("connect", () => {
        this.dispatchEvent(new CustomEvent("status", { detail: "online" }));
        if (!settled) { settled = true; clearTimeout(timer); resolve(this); }
      });
      c.on("error", (err) => {
        this.dispatchEvent(new CustomEvent("status", { detail: `error: ${err.message}` }));
        if (!settled && typeof err.code === "number") { // a CONNACK refusal (bad password, not authorised)
          settled = true; clearTimeout(timer); c.end(true);
          reject(new Error(`the broker refused ${this.username}: ${err.message}`));
        }
      });
      c.on("offline", () => this.dispatchEvent(new CustomEvent("status", { detail: "offline" })));
      c.on("reconnect", () => this.dispatchEvent(new CustomEvent("status", { detail: "reconnecting" })));
      c.on("message", (topic, payload, packet) => {
        const w = this.waiters.get(topic);
        if (w) { this.waiters.delete(topic); w(payload); }
        this.dispatchEvent(new CustomEvent("message", { detail: { topic, payload, retain: !!packet.retain } }));
      });
    });
  }

  close() { if (this.client) this.client.end(true); this.client = null; }

  subscribe(filter, qos = 1) {
    return new Promise((resolve, reject) => {
      this.client.subscribe(filter, { qos }, (err, granted) => {
        if (err) return reject(err);
        if (granted && granted.some((g) => g.qos >= 128)) return reject(new Error(`the broker refused the subscription to ${filter} (ACL)`));
        resolve();
      });
    });
  }

  publish(topic, payload, opts = {}) {
    return new Promise((resolve, reject) => {
      this.client.publish(topic, payload, { qos: 1, ...opts }, (err, packet) => {
        if (err) return reject(new Error(`the broker refused the message to ${topic}: ${err.message}`));
        if (packet && packet.reasonCode >= 128) return reject(new Error(`the broker refused the message to ${topic} (reason ${packet.reasonCode}, ACL)`));
        resolve();
      });
    });
  }

  /** The next message on exactly `topic` (already subscribed through the owner tree). */
  next(topic, timeoutMs) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.waiters.delete(topic); reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for the sharing service`)); }, timeoutMs);
      this.waiters.set(topic, (payload) => { clearTimeout(t); resolve(payload); });
    });
  }

  async rpc(method, params = {}, timeoutMs = 10000) {
    const call = randomHex(16);
    const replyTopic = `${this.owner}/rpc/${call}/reply`;
    const wait = this.next(replyTopic, timeoutMs);
    await this.publish(`${this.owner}/rpc/${call}`, JSON.stringify({ v: 1, method, params }));
    const reply = JSON.parse(new TextDecoder().decode(await wait));
    if (!reply.ok) throw new Error(`the service refused ${method}: ${reply.error}`);
    return reply.result;
  }

  /**
   * Publish a signed message and wait for the service's Result on results/{nonce}.
   * Unanswered after `resendMs`, the same bytes (same nonce) go out again, as the CLI does: with
   * several service instances the one that took it may have died before answering, and the
   * service applies a nonce once and answers a repeat with the verdict it stored.
   */
  async sendSigned(topic, message, timeoutMs = 15000, resendMs = 5000) {
    const wait = this.next(`${this.owner}/results/${message.nonce}`, timeoutMs);
    const payload = JSON.stringify(message);
    await this.publish(topic, payload);
    const again = setInterval(() => { this.publish(topic, payload).catch(() => {}); }, resendMs);
    try {
      return JSON.parse(new TextDecoder().decode(await wait));
    } finally {
      clearInterval(again);
    }
  }
}
