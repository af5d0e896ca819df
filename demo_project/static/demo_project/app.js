// The live page: rooms and messages, a countdown and the server clock.
//
// Queries and the postMessage mutation go over plain HTTP (fetch to /graphql/); the three
// subscriptions share one graphql-transport-ws WebSocket (graphql-ws-client.js), which
// reconnects and re-subscribes by itself when the server restarts (close 1012).

import { GraphQLWsClient } from "./graphql-ws-client.js";

const $ = (selector) => document.querySelector(selector);
const config = JSON.parse($("#demo-config").textContent);

const httpUrl = new URL(config.graphqlPath, window.location.href).href;
const wsUrl = httpUrl.replace(/^http/, "ws");

// -- HTTP GraphQL ----------------------------------------------------------------------------

async function graphql(query, variables = {}) {
  const response = await fetch(httpUrl, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const result = await response.json();
  if (result.errors && result.errors.length) throw new Error(result.errors.map((e) => e.message).join("; "));
  return result.data;
}

// -- connection status ---------------------------------------------------------------------

const status = $("#status");
let reconnects = 0;

function showStatus(state, detail) {
  status.dataset.state = state;
  if (detail.code !== undefined) {
    // Every close code so far, oldest first: what the page went through is visible (and testable).
    status.dataset.closeCodes = [status.dataset.closeCodes, detail.code].filter(Boolean).join(" ");
  }
  if (state === "connected") {
    if (detail.reconnected) reconnects += 1;
    status.dataset.reconnects = String(reconnects);
    status.textContent = detail.reconnected ? `connected (reconnected ${reconnects}×)` : "connected";
    showServer();
  } else if (state === "waiting") {
    status.textContent = `closed ${detail.code}${detail.reason ? ` (${detail.reason})` : ""}; retrying in ${detail.delay} ms`;
  } else if (state === "closed") {
    status.textContent = `closed ${detail.code} ${detail.reason}`;
  } else {
    status.textContent = state;
  }
}

const client = new GraphQLWsClient(wsUrl, { onStatus: showStatus });

async function showServer() {
  // Ask over the WebSocket itself: with several workers, this names the one holding it.
  const result = await client.request({ query: "{ stats { pid activeSubscriptions } }" });
  if (result && result.data) {
    $("#server").textContent = `WebSocket served by pid ${result.data.stats.pid}`;
  }
}

// -- rooms and messages ----------------------------------------------------------------------

const roomSelect = $("#room");
const list = $("#messages");
let currentRoom = null;
let stopMessages = null;

function formatTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

function addMessage(message) {
  if (message.room !== currentRoom) return;
  if (list.querySelector(`[data-id="${CSS.escape(message.id)}"]`)) return; // history and live overlap
  const item = document.createElement("li");
  item.dataset.id = message.id;
  const time = document.createElement("time");
  time.textContent = formatTime(message.createdAt);
  const author = document.createElement("b");
  author.textContent = message.author;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  item.append(time, " ", author, " ", text);
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

const MESSAGE_FIELDS = "id room author text createdAt";

async function reloadHistory() {
  if (!currentRoom) return;
  const room = currentRoom;
  const data = await graphql(`query Recent($room: String!) { messages(room: $room, limit: 50) { ${MESSAGE_FIELDS} } }`, {
    room,
  });
  if (room === currentRoom) data.messages.forEach(addMessage);
}

async function enterRoom(room) {
  if (stopMessages) stopMessages();
  currentRoom = room;
  window.location.hash = room;
  list.replaceChildren();
  list.dataset.room = room;
  // The subscription replays the recent messages after it joined the room's group, so a
  // message posted while it starts (or while the page reconnects after a restart, when the
  // client re-subscribes) shows up once (addMessage ignores ids it already shows), never
  // zero times. The history read below paints the page, and marks it ready, at once.
  stopMessages = client.subscribe(
    {
      query: `subscription Live($room: String!) { messages(room: $room, recent: 50) { ${MESSAGE_FIELDS} } }`,
      variables: { room },
    },
    {
      next: (result) => result.data && addMessage(result.data.messages),
      error: (errors) => showError(errors.map((e) => e.message).join("; ")),
    },
  );
  await reloadHistory();
  list.dataset.ready = "true";
}

async function loadRooms() {
  const data = await graphql("{ rooms { slug title } }");
  for (const room of data.rooms) {
    const option = document.createElement("option");
    option.value = room.slug;
    option.textContent = room.title;
    roomSelect.append(option);
  }
  const wanted = window.location.hash.slice(1);
  roomSelect.value = data.rooms.some((r) => r.slug === wanted) ? wanted : data.rooms[0].slug;
  roomSelect.addEventListener("change", () => enterRoom(roomSelect.value));
  await enterRoom(roomSelect.value);
}

// -- posting -----------------------------------------------------------------------------------

const form = $("#post-form");
const errorBox = $("#post-error");

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("#text").value;
  const author = $("#author").value;
  showError("");
  try {
    const data = await graphql(
      `mutation Post($room: String!, $text: String!, $author: String!) {
         postMessage(room: $room, text: $text, author: $author) { ${MESSAGE_FIELDS} } }`,
      { room: currentRoom, text, author },
    );
    addMessage(data.postMessage);
    $("#text").value = "";
  } catch (error) {
    showError(error.message);
  }
});

// -- countdown and clock -----------------------------------------------------------------------

const countdownValue = $("#countdown-value");
let stopCountdown = null;

$("#countdown-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (stopCountdown) stopCountdown();
  const from = Number($("#countdown-from").value);
  countdownValue.dataset.state = "running";
  countdownValue.textContent = "…";
  stopCountdown = client.subscribe(
    { query: "subscription Count($from: Int!) { countdown(from: $from, intervalMs: 1000) }", variables: { from } },
    {
      next: (result) => {
        if (result.data) countdownValue.textContent = String(result.data.countdown);
      },
      error: (errors) => {
        countdownValue.dataset.state = "error";
        countdownValue.textContent = errors.map((e) => e.message).join("; ");
      },
      complete: () => {
        countdownValue.dataset.state = "done";
        countdownValue.textContent = "liftoff";
      },
    },
  );
});

const clock = $("#clock");
client.subscribe(
  { query: "subscription { serverTime(intervalMs: 1000) }" },
  {
    next: (result) => {
      if (!result.data) return;
      const time = new Date(result.data.serverTime);
      clock.textContent = time.toISOString().slice(11, 19) + " UTC";
      clock.dataset.ticks = String(Number(clock.dataset.ticks || 0) + 1);
    },
  },
);

loadRooms().catch((error) => showError(`Could not load rooms: ${error.message}`));
