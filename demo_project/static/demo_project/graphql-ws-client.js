// A small graphql-transport-ws client for the browser, with reconnection.
//
// The protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md), as used here:
//   client opens a WebSocket with subprotocol "graphql-transport-ws"
//   client -> {type: "connection_init", payload}      server -> {type: "connection_ack"}
//   client -> {id, type: "subscribe", payload: {query, variables}}
//   server -> {id, type: "next", payload} ... then {id, type: "complete"} or {id, type: "error", payload: [errors]}
//   client -> {id, type: "complete"} to stop an operation early
//   either side -> {type: "ping"}; the other answers {type: "pong"}
//
// Reconnection: when the socket closes for any reason but a fatal protocol error, the client
// opens a new one, sends connection_init again, and re-subscribes every operation that had not
// completed (same id, same payload). Close 1012 ("service restart": the server is draining for a
// deploy or a reload) and 1001 ("going away") are retried almost at once, other closes with an
// exponential backoff. An operation refused because the server is draining (error code
// SERVER_RESTARTING) is kept and re-sent on the next connection too. Messages posted while
// the socket was down are not replayed by the server;
// `onStatus("connected", {reconnected: true})` is the application's cue to refetch what it shows.

const SUBPROTOCOL = "graphql-transport-ws";

// Closes after which retrying cannot help: the server rejected what this client sent.
const FATAL_CLOSE_CODES = new Set([
  4400, // bad request: an invalid message
  4401, // unauthorized: subscribe before ack
  4403, // forbidden
  4406, // subprotocol not acceptable
  4409, // subscriber for this id already exists
  4429, // too many initialisation requests
]);

// Closes that announce a planned restart: come back soon.
const RESTART_CLOSE_CODES = new Set([1001, 1012]);

// The error code a draining server (channelserver.strawberry.GraphQLWSConsumer) gives an
// operation it will not start on this connection: keep the operation, send it again on the next.
const RESTARTING_CODE = "SERVER_RESTARTING";

function isRestarting(errors) {
  return Array.isArray(errors) && errors.some((e) => e && e.extensions && e.extensions.code === RESTARTING_CODE);
}

export class GraphQLWsClient {
  /**
   * @param {string} url  ws:// or wss:// URL of the GraphQL endpoint
   * @param {object} [options]
   * @param {object} [options.connectionParams]  payload of connection_init
   * @param {(state: string, detail: object) => void} [options.onStatus]
   *        called with "connecting", "connected" ({reconnected, attempt}) or
   *        "waiting" ({code, reason, delay, attempt}) and "closed" ({code, reason, fatal})
   * @param {number} [options.minDelay]  first backoff delay, ms
   * @param {number} [options.maxDelay]  longest backoff delay, ms
   * @param {number} [options.ackTimeout]  how long to wait for connection_ack, ms
   */
  constructor(url, options = {}) {
    this.url = url;
    this.connectionParams = options.connectionParams || {};
    this.onStatus = options.onStatus || (() => {});
    this.minDelay = options.minDelay ?? 300;
    this.maxDelay = options.maxDelay ?? 10000;
    this.ackTimeout = options.ackTimeout ?? 5000;
    this.operations = new Map(); // id -> {payload, sink}
    this.nextId = 1;
    this.socket = null;
    this.acked = false;
    this.attempt = 0; // consecutive failed attempts
    this.connections = 0; // successful connections so far
    this.stopped = false;
    this.retryTimer = null;
    this.connect();
  }

  /**
   * Start an operation (subscription, query or mutation).
   * @param {{query: string, variables?: object, operationName?: string}} payload
   * @param {{next?: Function, error?: Function, complete?: Function}} sink
   * @returns {() => void} stops the operation (sends "complete" if the socket is up)
   */
  subscribe(payload, sink) {
    const id = String(this.nextId++);
    this.operations.set(id, { payload, sink });
    if (this.acked) this.send({ id, type: "subscribe", payload });
    return () => {
      if (!this.operations.delete(id)) return;
      if (this.acked) this.send({ id, type: "complete" });
    };
  }

  /** Run a query or mutation once; resolves with its single result. */
  request(payload) {
    return new Promise((resolve, reject) => {
      let result = null;
      this.subscribe(payload, {
        next: (value) => (result = value),
        error: reject,
        complete: () => resolve(result),
      });
    });
  }

  /** Close for good: no reconnection. */
  dispose() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000, "client disposed");
  }

  // -- connection ------------------------------------------------------------------------

  connect() {
    if (this.stopped) return;
    this.onStatus("connecting", { attempt: this.attempt });
    const socket = new WebSocket(this.url, SUBPROTOCOL);
    this.socket = socket;
    this.acked = false;
    let ackTimer = null;

    socket.onopen = () => {
      this.send({ type: "connection_init", payload: this.connectionParams });
      ackTimer = setTimeout(() => socket.close(4408, "connection_ack timeout"), this.ackTimeout);
    };

    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        socket.close(4400, "invalid JSON");
        return;
      }
      this.handle(message, () => clearTimeout(ackTimer));
    };

    socket.onclose = (event) => {
      clearTimeout(ackTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      this.acked = false;
      this.closed(event.code, event.reason);
    };
  }

  handle(message, ackReceived) {
    switch (message.type) {
      case "connection_ack": {
        ackReceived();
        this.acked = true;
        this.attempt = 0;
        this.connections += 1;
        // Re-subscribe (or subscribe for the first time) every pending operation.
        for (const [id, { payload }] of this.operations) this.send({ id, type: "subscribe", payload });
        this.onStatus("connected", { reconnected: this.connections > 1, connections: this.connections });
        return;
      }
      case "ping":
        this.send({ type: "pong", payload: message.payload });
        return;
      case "pong":
        return;
      case "next": {
        const op = this.operations.get(message.id);
        if (op && op.sink.next) op.sink.next(message.payload);
        return;
      }
      case "error": {
        const op = this.operations.get(message.id);
        if (op && isRestarting(message.payload)) return; // re-sent after the reconnect
        this.operations.delete(message.id);
        if (op && op.sink.error) op.sink.error(message.payload);
        return;
      }
      case "complete": {
        const op = this.operations.get(message.id);
        this.operations.delete(message.id);
        if (op && op.sink.complete) op.sink.complete();
        return;
      }
      default:
        this.socket.close(4400, `unexpected message type ${message.type}`);
    }
  }

  closed(code, reason) {
    if (this.stopped) {
      this.onStatus("closed", { code, reason, fatal: false });
      return;
    }
    if (FATAL_CLOSE_CODES.has(code)) {
      this.stopped = true;
      for (const { sink } of this.operations.values()) {
        if (sink.error) sink.error([{ message: `connection closed: ${code} ${reason}` }]);
      }
      this.operations.clear();
      this.onStatus("closed", { code, reason, fatal: true });
      return;
    }
    const delay = this.retryDelay(code);
    this.attempt += 1;
    this.onStatus("waiting", { code, reason, delay, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  retryDelay(code) {
    // A little randomness, so that the clients of a restarted server do not all come back at once.
    const jitter = Math.random() * 0.5 + 0.75;
    if (RESTART_CLOSE_CODES.has(code) && this.attempt === 0) return Math.round(100 * jitter);
    const backoff = Math.min(this.maxDelay, this.minDelay * 2 ** Math.min(this.attempt, 10));
    return Math.round(backoff * jitter);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }
}
