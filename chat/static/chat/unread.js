// Unread state of every room in the sidebar, on the room list page and in the tab title, kept live
// by the socket (docs/protocol.md, "Unread state"): a `watch` brings each room's counts, then an
// `activity` frame for each message stored, edited or deleted in any of them, counted by the
// server's rules (your own messages, deleted ones and thread replies are not unread; a mention of
// you, or any message of a direct conversation, is a mention). An `unread` frame replaces a room's
// counts after you read it on another tab or device; a reconnect or a gap in a room's seqs asks for
// the counts again, so they never drift. Also the desktop notifications of every room, by each
// room's setting (all, mentions, mute), and that setting's menu on the room page.
//
// The room page hands it its socket (chat.js: startUnread with `send`); the room list page has no
// socket of its own, and this module opens a small one (`#unread-config`).

const TEXT = Object.freeze({
  unread: ' unread',
  mentions: (n) => (n === 1 ? ' mention' : ' mentions'),
  muted: ' (muted)',
  inRoom: (author, room) => `${author} in ${room}`,
  direct: (author, text) => `${author}: ${text}`,
  levelSaved: { all: 'Notifications: all messages', mentions: 'Notifications: mentions only', mute: 'Room muted' },
});

const LEVELS = ['all', 'mentions', 'mute'];
const NOTIFY_KEY = 'chat.notify'; // chat.js's "Notify me" choice
const PREVIEW = 120;
const BACKOFF_BASE = 500, BACKOFF_CAP = 15000, PING_EVERY = 25000;

const U = {
  me: '',
  current: null, // the room the page shows (chat.js counts its messages itself)
  send: null, // (frame) => bool
  rooms: new Map(), // slug -> {kind, unread, mentions, lastSeq, read, notify}
  baseTitle: document.title,
  onTitle: null, // chat.js repaints the title itself
  refetch: new Set(), // slugs asked for again, not yet answered
};

const isMe = (name) => typeof name === 'string' && name.toLowerCase() === U.me.toLowerCase();
const mentionsMe = (list) => Array.isArray(list) && list.some(isMe);

// ---------------------------------------------------------------- counting

function counted(r, a) {
  return !isMe(a.author) && a.reply_to == null && a.seq > r.read;
}

function mentioned(r, a) {
  return !isMe(a.author) && a.seq > r.read && (mentionsMe(a.mentions) || (r.kind === 'direct' && a.reply_to == null));
}

function applyActivity(r, slug, a) {
  if (a.kind === 'message') {
    if (a.seq <= r.lastSeq) return false; // already in the counts
    if (a.seq > r.lastSeq + 1) { // missed one: ask the server again
      watch([slug]);
      return false;
    }
    r.lastSeq = a.seq;
    if (isMe(a.author)) {
      // Writing in a room's flow moves your read marker if you ever entered the room (a script may
      // post where you never did): the server says which.
      if (a.reply_to == null && slug !== U.current) watch([slug]);
      return false;
    }
    if (counted(r, a)) r.unread += 1;
    if (mentioned(r, a)) r.mentions += 1;
    return mentioned(r, a) || counted(r, a);
  }
  if (a.kind === 'deleted') {
    if (counted(r, a)) r.unread = Math.max(0, r.unread - 1);
    if (mentioned(r, a)) r.mentions = Math.max(0, r.mentions - 1);
  } else if (a.kind === 'edited' && !isMe(a.author) && a.seq > r.read) {
    if (r.kind === 'direct' && a.reply_to == null) return false; // counted as a mention already
    r.mentions = Math.max(0, r.mentions + Number(mentionsMe(a.mentions)) - Number(mentionsMe(a.was)));
  }
  return false;
}

function setCounts(c) {
  const known = U.rooms.get(c.room);
  U.rooms.set(c.room, {
    kind: c.kind, unread: c.unread, mentions: c.mentions, read: c.read, notify: c.notify,
    lastSeq: Math.max(c.last_seq, known?.lastSeq ?? 0),
  });
  U.refetch.delete(c.room);
}

// ---------------------------------------------------------------- painting

function anchorsOf(slug) {
  const key = CSS.escape(slug);
  return document.querySelectorAll(
    `.sidebar-rooms li[data-slug="${key}"] > a, .room-card[data-slug="${key}"] > a, .direct-card[data-slug="${key}"] > a`,
  );
}

function badge(anchor, className, count, label) {
  const host = anchor.querySelector('.room-card-head') || anchor; // a room card's badges sit by its name
  let node = host.querySelector(`.${className.split(' ')[0]}`);
  if (!count) return node?.remove();
  if (!node) {
    node = document.createElement('span');
    if (className.startsWith('badge-mention')) host.append(node);
    else host.insertBefore(node, host.querySelector('.badge-mention'));
  }
  node.className = className;
  const hidden = document.createElement('span');
  hidden.className = 'visually-hidden';
  hidden.textContent = label;
  node.replaceChildren(String(count), hidden);
  return node;
}

function paint(slug) {
  const r = U.rooms.get(slug);
  if (!r) return;
  const here = slug === U.current;
  const muted = r.notify === 'mute';
  const direct = r.kind === 'direct';
  for (const anchor of anchorsOf(slug)) {
    const item = anchor.parentElement;
    item.dataset.unread = String(r.unread);
    item.dataset.mentions = String(r.mentions);
    item.dataset.notify = r.notify;
    item.classList.toggle('has-unread', !here && r.unread > 0);
    item.classList.toggle('is-muted', muted);
    if (here) {
      anchor.querySelector('.badge')?.remove();
      anchor.querySelector('.badge-mention')?.remove();
      continue;
    }
    const count = direct ? r.mentions : r.unread;
    const main = badge(anchor, `badge${muted ? ' badge-muted' : ''}`, count, (direct ? TEXT.mentions(count) : TEXT.unread) + (muted ? TEXT.muted : ''));
    if (main) main.title = main.textContent.trim();
    badge(anchor, 'badge-mention', direct || muted ? 0 : r.mentions && `@${r.mentions}`, TEXT.mentions(r.mentions));
  }
  const select = document.getElementById('notify-level');
  if (select && here && select.value !== r.notify) select.value = r.notify;
}

// Mentions and direct messages waiting, outside muted rooms and the one the page shows.
export function mentionTotal() {
  let total = 0;
  for (const [slug, r] of U.rooms) if (slug !== U.current && r.notify !== 'mute') total += r.mentions;
  return total;
}

function repaintTitle() {
  if (U.onTitle) return U.onTitle();
  const total = mentionTotal();
  const title = total ? `(${total}) ${U.baseTitle}` : U.baseTitle;
  if (document.title !== title) document.title = title;
}

// ---------------------------------------------------------------- notifications

const notifyOn = () => {
  try {
    return 'Notification' in window && Notification.permission === 'granted' && localStorage.getItem(NOTIFY_KEY) === 'on';
  } catch { return false; }
};

function roomName(slug) {
  if (slug === U.current) return document.getElementById('room-name-text')?.textContent || slug;
  const named = document.querySelector(
    `[data-slug="${CSS.escape(slug)}"] :is(.sidebar-room-name, .room-card-name, .direct-card-name)`,
  );
  return named?.textContent.trim() || slug;
}

// Whether a message (an `activity` frame's fields) notifies, by its room's setting.
function wanted(r, a) {
  if (r.notify === 'mute' || isMe(a.author)) return false;
  if (mentionsMe(a.mentions) || (r.kind === 'direct' && a.reply_to == null)) return true;
  return r.notify === 'all' && a.reply_to == null;
}

function showNotification(slug, r, a) {
  // The open room notifies only while its tab is in the background; any other room always does.
  if (!notifyOn() || (slug === U.current && !document.hidden)) return;
  const text = Array.from(a.preview || '').slice(0, PREVIEW).join('');
  try {
    const notification = r.kind === 'direct'
      ? new Notification(TEXT.direct(a.author, text), { tag: slug })
      : new Notification(TEXT.inRoom(a.author, roomName(slug)), { body: text, tag: `${slug}-${a.seq}` });
    notification.onclick = () => {
      window.focus();
      notification.close();
      if (slug !== U.current) location.assign(`/rooms/${encodeURIComponent(slug)}/`);
    };
  } catch {
    // Android Chrome only notifies through a service worker: the badges and the title still count.
  }
}

// ---------------------------------------------------------------- frames

function watch(slugs) {
  const asked = slugs ? slugs.filter((slug) => !U.refetch.has(slug)) : null;
  if (asked && !asked.length) return;
  for (const slug of asked || []) U.refetch.add(slug);
  U.send?.(asked ? { type: 'watch', rooms: asked, ref: 'unread-watch' } : { type: 'watch', ref: 'unread-watch' });
}

// The socket (re)opened: every count again, as they may have changed meanwhile.
export function unreadConnected() {
  U.refetch.clear();
  watch(null);
}

function onActivity(a) {
  const r = U.rooms.get(a.room);
  if (!r) return;
  if (applyActivity(r, a.room, a) && wanted(r, a)) showNotification(a.room, r, a);
  paint(a.room);
  repaintTitle();
}

function onCounts(list) {
  for (const c of list) {
    setCounts(c);
    paint(c.room);
  }
  repaintTitle();
}

function onNotify(f) {
  const r = U.rooms.get(f.room);
  if (r) r.notify = f.level;
  paint(f.room);
  repaintTitle();
}

// A message of a direct conversation this page does not watch yet (one just started): watch it
// (its counts come with the reply) and notify now, as its activity could not reach us.
function onDirectMessage(f) {
  const m = f.message;
  if (U.rooms.has(f.room) || !m) return;
  watch([f.room]);
  const r = { kind: 'direct', notify: 'all' };
  const a = { author: m.author, reply_to: m.reply_to, mentions: [], preview: m.body, seq: m.seq };
  if (!m.deleted && wanted(r, a)) showNotification(f.room, r, a);
}

// The frames this module reads; returns true for those that are only its own.
// A watched room renamed: its name in the sidebar and on the room list follows.
function renamed(f) {
  const name = f.info?.name;
  if (!name || f.info?.kind === 'direct') return;
  const selector = `[data-slug="${CSS.escape(f.room)}"] :is(.sidebar-room-name, .room-card-name)`;
  for (const node of document.querySelectorAll(selector)) node.textContent = name;
}

export function handleUnreadFrame(f) {
  switch (f.type) {
    case 'watching': onCounts(f.rooms || []); return true;
    case 'activity': onActivity(f); return true;
    case 'unread': onCounts([f]); return true;
    case 'notify': onNotify(f); return true;
    case 'direct_message': onDirectMessage(f); return false;
    case 'room_invited': watch([f.room]); return false; // a room just joined counts from now on
    case 'room_updated': renamed(f); return false; // (the open room's page shows the rest)
    case 'error':
      if (typeof f.ref === 'string' && f.ref.startsWith('unread-')) {
        if (f.room) U.refetch.delete(f.room);
        return true;
      }
      return false;
    default: return false;
  }
}

// ---------------------------------------------------------------- the notification menu

function wireLevelMenu() {
  const select = document.getElementById('notify-level');
  if (!select || !U.current) return;
  select.addEventListener('change', () => {
    const level = select.value;
    if (!LEVELS.includes(level)) return;
    const r = U.rooms.get(U.current);
    if (r) r.notify = level;
    U.send?.({ type: 'notify', room: U.current, level, ref: 'unread-notify' });
    select.title = TEXT.levelSaved[level];
  });
}

// ---------------------------------------------------------------- start

// `send`: the page's socket (chat.js), which hands this module its frames (handleUnreadFrame) and
// calls unreadConnected on each open. Without it, the module opens a socket of its own.
export function startUnread({ me, current = null, send = null, onTitle = null, wsPath = '/ws/chat/' }) {
  Object.assign(U, { me, current, send, onTitle, baseTitle: document.title });
  wireLevelMenu();
  if (!send) ownSocket(wsPath);
}

function ownSocket(wsPath) {
  let ws = null;
  let attempt = 0;
  let ping = null;
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${wsPath}`;
  U.send = (frame) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  };
  const connect = () => {
    const socket = new WebSocket(url);
    ws = socket;
    socket.addEventListener('open', () => {
      attempt = 0;
      unreadConnected();
      ping = setInterval(() => U.send({ type: 'ping', ref: 'unread-ping' }), PING_EVERY);
    });
    socket.addEventListener('message', (event) => {
      let frame = null;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame && typeof frame === 'object') handleUnreadFrame(frame);
    });
    socket.addEventListener('close', (event) => {
      clearInterval(ping);
      if (socket !== ws || event.code === 4401 || event.code === 4403) return; // signed out: stay quiet
      const delay = Math.random() * Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** Math.min(attempt, 20));
      attempt += 1;
      setTimeout(connect, delay);
    });
  };
  connect();
}

const own = document.getElementById('unread-config');
if (own) {
  const cfg = JSON.parse(own.textContent);
  startUnread({ me: cfg.username, wsPath: cfg.wsPath });
}
