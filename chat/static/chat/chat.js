// Room page client: one WebSocket, one room, speaking the wire protocol of docs/protocol.md.
// User data is only ever rendered with textContent: never innerHTML.

const cfg = JSON.parse(document.getElementById('chat-config').textContent);
const ROOM = cfg.room;
const ME = cfg.username;
const MAX_BODY = Number(cfg.maxBody) || 4000;

// Timings in ms. Reconnect backoff: full jitter over base * factor^attempt, capped.
const BACKOFF_BASE = 500, BACKOFF_FACTOR = 2, BACKOFF_CAP = 15000;
const PING_EVERY = 25000, PONG_TIMEOUT = 10000;
const TYPING_EVERY = 2000, TYPING_SHOWN = 3000, READ_DEBOUNCE = 1000;
const HISTORY_LIMIT = 50, RATE_RETRIES = 5;

// The wire protocol's close and error codes this page acts on: a copy of chat/realtime/codes.py's,
// which tests/unit/test_codes.py compares with it.
const CLOSE = Object.freeze({ NORMAL: 1000, NO_PONG: 4000, SESSION_ENDED: 4401, DEACTIVATED: 4403 });
const ERROR = Object.freeze({ NOT_FOUND: 'not_found', FORBIDDEN: 'forbidden', RATE_LIMITED: 'rate_limited' });

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $('room-layout'), list: $('messages'), wrap: $('messages-wrap'), newButton: $('new-messages'),
  status: $('status'), name: $('room-name-text'), topic: $('room-topic'),
  presence: $('presence'), presenceCounts: [$('presence-count'), $('presence-count-panel')],
  presenceToggle: $('presence-toggle'), typing: $('typing'),
  form: $('composer'), input: $('composer-input'), send: $('composer-send'), counter: $('composer-counter'),
  closed: $('room-closed'), signedOut: $('signed-out'), banner: $('connection-banner'),
  roomError: $('room-error'), toasts: $('toasts'), notify: $('notify-toggle'),
  dialog: $('delete-dialog'), dialogPreview: $('delete-dialog-preview'),
};

// The single piece of mutable state.
const S = {
  ws: null,
  joined: false, // a `joined` arrived on the current socket
  joining: false, // a join (first or catch-up) is in flight
  baselined: false, // the first `joined` has set where the room starts for us
  stopped: false, // no more reconnects (signed out, deactivated, room closed or unavailable)
  lastSeq: 0, // highest contiguous seq rendered
  firstSeq: null, // lowest seq rendered (history pages below it)
  maxSeen: 0, // highest seq heard of (gap detection)
  hasMore: true,
  historyBusy: false,
  bySeq: new Map(), // seq -> element
  outbox: new Map(), // client_id -> {cid, body, createdAt, node, status, retries, seq}
  typers: new Map(), // username -> timeout id
  attempt: 0, // reconnects since the last `joined`
  authRetried: false, // one reconnect after a 4401 already tried
  joinCount: 0,
  lastTypingSent: 0,
  lastReadSent: 0,
  lastRead: Number.isInteger(cfg.lastRead) ? cfg.lastRead : null, // read marker when the page loaded
  lastScrollTop: 0,
  refs: 0, // counter for edit/delete refs
  edits: new Map(), // ref -> message element with an edit in flight
  deletes: new Map(), // ref -> message element with a delete in flight
  deleteTarget: null, // message element the delete dialog is about
  unseen: 0, // messages from others that arrived while the tab was hidden
  notifyOn: false, // the user asked for desktop notifications (and may have since revoked the permission)
  baseTitle: document.title,
  roomName: ui.name.textContent,
  timers: { reconnect: null, countdown: null, ping: null, pong: null, read: null, catchUp: null },
};

// ---------------------------------------------------------------- helpers

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, className, onClick) {
  const node = make('button', className, label);
  node.type = 'button';
  node.addEventListener('click', onClick);
  return node;
}

function newClientId() {
  if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
  else bytes.forEach((_, i) => { bytes[i] = Math.floor(Math.random() * 256); });
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const charCount = (text) => Array.from(text).length; // code points, as the server counts

function send(frame) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
  S.ws.send(JSON.stringify(frame));
  return true;
}

function setStatus(state, text) {
  ui.status.dataset.state = state;
  if (ui.status.textContent !== text) ui.status.textContent = text;
}

function toast(text) {
  const node = make('div', 'toast');
  node.append(make('span', 'toast-text', text), button('×', 'toast-close', () => node.remove()));
  node.lastChild.setAttribute('aria-label', 'Dismiss');
  ui.toasts.append(node);
  while (ui.toasts.children.length > 4) ui.toasts.firstChild.remove();
  setTimeout(() => node.remove(), 10000);
}

function showBanner(node, text) {
  if (text !== undefined) node.textContent = text;
  node.hidden = false;
}

function setComposerEnabled(enabled) { ui.input.disabled = ui.send.disabled = !enabled; }

function userHue(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

function avatar(name) {
  const node = make('span', 'avatar', Array.from(name)[0]?.toUpperCase() || '?');
  node.setAttribute('aria-hidden', 'true');
  node.style.setProperty('--hue', userHue(name));
  return node;
}

// ---------------------------------------------------------------- message text: links and mentions

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+/giu;
// Django usernames: letters, digits and @ . + - _; a trailing dot is punctuation, not the name.
const NAME = '[\\p{L}\\p{N}_]';
const MENTION_PATTERN = new RegExp(`(?<![\\p{L}\\p{N}_.+\\-@])@(${NAME}(?:[\\p{L}\\p{N}_.+\\-@]*${NAME})?)`, 'gu');
const CLOSERS = { ')': '(', ']': '[', '}': '{' };

const countOf = (text, ch) => text.split(ch).length - 1;

// Punctuation after a URL is usually the sentence's; a closing bracket is the URL's only if it
// closes one opened inside it (as in Wikipedia links).
function trimUrl(raw) {
  let url = raw.replace(/[.,;:!?'*_~]+$/u, '');
  while (CLOSERS[url.at(-1)] && countOf(url, url.at(-1)) > countOf(url, CLOSERS[url.at(-1)])) {
    url = url.slice(0, -1).replace(/[.,;:!?'*_~]+$/u, '');
  }
  return url;
}

function safeHref(text) {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, text) {
  const node = make('a', 'link', text);
  node.href = href;
  node.target = '_blank';
  node.rel = 'noopener noreferrer nofollow';
  return node;
}

const isMe = (name) => name.toLowerCase() === ME.toLowerCase();

// Appends `text` with its @mentions highlighted; returns true when it mentions the current user.
function appendMentions(target, text) {
  let mentioned = false;
  let last = 0;
  for (const match of text.matchAll(MENTION_PATTERN)) {
    const me = isMe(match[1]);
    mentioned ||= me;
    target.append(text.slice(last, match.index), make('span', me ? 'mention mention-me' : 'mention', match[0]));
    last = match.index + match[0].length;
  }
  target.append(text.slice(last));
  return mentioned;
}

// Renders a body as text nodes, mention spans and http(s) links (never markup the user typed).
function renderText(target, text) {
  target.replaceChildren();
  let mentioned = false;
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const raw = trimUrl(match[0]);
    const href = safeHref(raw);
    if (!href) continue;
    mentioned = appendMentions(target, text.slice(last, match.index)) || mentioned;
    target.append(link(href, raw));
    last = match.index + raw.length;
  }
  return appendMentions(target, text.slice(last)) || mentioned;
}

// ---------------------------------------------------------------- rendering messages

const rawBodies = new WeakMap(); // message element -> its body as sent (for editing)

function buildMessage(author) {
  const node = make('div', 'message');
  const meta = make('div', 'meta');
  meta.append(make('span', 'author', author), make('time', 'time'), make('span', 'note'));
  const main = make('div', 'message-main');
  main.append(meta, make('div', 'body'));
  node.append(avatar(author), main);
  return node;
}

const pad = (n) => String(n).padStart(2, '0');
const dayKey = (date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;

function setTime(node, iso) {
  const date = iso ? new Date(iso) : new Date();
  if (Number.isNaN(date.getTime())) return;
  const time = node.querySelector('.time');
  time.dateTime = date.toISOString();
  time.textContent = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  time.title = date.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  node.dataset.day = dayKey(date);
}

function setNote(node, text) { node.querySelector('.note').textContent = text; }

function setEdited(node, iso) {
  node.querySelector('.edited')?.remove();
  if (!iso) return;
  const label = make('span', 'edited', '(edited)');
  const date = new Date(iso);
  if (!Number.isNaN(date.getTime())) label.title = `Edited ${date.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'short' })}`;
  node.querySelector('.time').after(label);
}

function setBody(node, body, editedAt) {
  rawBodies.set(node, body);
  const mentionsMe = renderText(node.querySelector('.body'), body);
  const mentioned = mentionsMe && node.dataset.author !== ME;
  node.classList.toggle('mentioned', mentioned);
  node.querySelector('.mention-flag')?.remove();
  if (mentioned) node.querySelector('.author').after(make('span', 'visually-hidden mention-flag', 'mentions you'));
  setEdited(node, editedAt);
}

function markDeleted(node) {
  closeEditor(node);
  node.classList.add('deleted');
  node.classList.remove('mentioned', 'deleting');
  node.querySelector('.mention-flag')?.remove();
  node.querySelector('.edited')?.remove();
  node.querySelector('.body').textContent = 'message deleted';
  renderTools(node);
}

function fillMessage(node, m) {
  node.dataset.seq = m.seq;
  node.dataset.id = m.id;
  node.dataset.author = m.author;
  if (m.client_id) node.dataset.clientId = m.client_id;
  node.classList.toggle('own', m.author === ME);
  node.querySelector('.author').textContent = m.author;
  setTime(node, m.created_at);
  if (m.deleted) markDeleted(node);
  else setBody(node, m.body, m.edited_at);
  renderTools(node); // after the id: a just-acked message of ours gets its controls here
  return node;
}

const messageById = (id) => ui.list.querySelector(`.message[data-id="${Number(id)}"]:not(.outbox)`);

// Real messages sit above the outbox (our own messages not yet placed in seq order).
function insertLive(node) {
  ui.list.insertBefore(node, ui.list.querySelector('.message.outbox'));
  refreshDaySeparators();
}

function findOutboxEntry(m) {
  if (m.author !== ME) return null;
  if (m.client_id && S.outbox.has(m.client_id)) return S.outbox.get(m.client_id);
  for (const entry of S.outbox.values()) if (entry.seq === m.seq) return entry;
  return null;
}

// The pending element becomes the real message (never show both).
function adopt(entry, m) {
  S.outbox.delete(entry.cid);
  const node = entry.node;
  node.classList.remove('pending', 'failed', 'outbox');
  node.querySelector('.actions')?.remove();
  setNote(node, '');
  return fillMessage(node, { ...m, client_id: m.client_id || entry.cid });
}

// Render a message only in seq order; report gaps. Returns true when it was appended.
function acceptLive(m) {
  if (m.seq <= S.lastSeq) return false;
  if (m.seq > S.lastSeq + 1) return noteSeq(m.seq), false; // gap: catch up, never render out of order
  const entry = findOutboxEntry(m);
  const node = entry ? adopt(entry, m) : fillMessage(buildMessage(m.author), m);
  insertLive(node);
  S.bySeq.set(m.seq, node);
  S.lastSeq = m.seq;
  if (S.firstSeq === null) S.firstSeq = m.seq;
  if (S.typers.has(m.author)) stopTyping(m.author);
  return true;
}

// ---------------------------------------------------------------- editing and deleting your own messages

const canModify = (node) => node.dataset.author === ME && Boolean(node.dataset.id)
  && !node.classList.contains('deleted') && !node.classList.contains('outbox');

function renderTools(node) {
  const tools = node.querySelector('.message-tools');
  if (!canModify(node)) return tools?.remove();
  if (tools) return;
  const edit = button('Edit', 'tool edit-button', () => openEditor(node));
  const remove = button('Delete', 'tool delete-button', () => confirmDelete(node));
  edit.setAttribute('aria-label', 'Edit message');
  remove.setAttribute('aria-label', 'Delete message');
  const group = make('span', 'message-tools');
  group.append(edit, remove);
  node.querySelector('.meta').append(group);
}

function openEditor(node) {
  const open = node.querySelector('.editor');
  if (open) return open.querySelector('textarea').focus();
  const id = `editor-${node.dataset.id}`;
  const editor = make('form', 'editor');
  editor.noValidate = true;
  const label = make('label', 'visually-hidden', 'Edit message');
  label.htmlFor = id;
  const area = make('textarea', 'editor-input');
  Object.assign(area, { id, rows: 1, value: rawBodies.get(node) || '' });
  area.setAttribute('aria-describedby', `${id}-hint ${id}-error`);
  const hint = make('span', 'editor-hint muted', 'Enter to save · Shift+Enter for a new line · Escape to cancel');
  hint.id = `${id}-hint`;
  const error = make('span', 'editor-error');
  error.id = `${id}-error`;
  error.setAttribute('aria-live', 'assertive');
  const save = make('button', 'btn btn-primary btn-small', 'Save');
  save.type = 'submit';
  const actions = make('div', 'editor-actions');
  actions.append(save, button('Cancel', 'btn btn-small btn-quiet', () => cancelEdit(node)), hint);
  editor.append(label, area, error, actions);
  editor.addEventListener('submit', (event) => { event.preventDefault(); saveEdit(node); });
  area.addEventListener('keydown', (event) => onEditorKey(event, node));
  area.addEventListener('input', () => {
    const follow = isAtBottom();
    sizeToContent(area);
    if (follow) scrollListTo(ui.list.scrollHeight);
  });
  node.classList.add('editing');
  node.querySelector('.body').hidden = true;
  node.querySelector('.body').after(editor);
  sizeToContent(area);
  area.focus({ preventScroll: true });
  area.setSelectionRange(area.value.length, area.value.length);
  node.scrollIntoView({ block: 'nearest' }); // Save and Cancel too, not just the text
}

function onEditorKey(event, node) {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    saveEdit(node);
  } else if (event.key === 'Escape') {
    event.preventDefault();
    cancelEdit(node);
  }
}

function sizeToContent(area) {
  area.style.height = 'auto';
  area.style.height = `${Math.min(area.scrollHeight + 2, 240)}px`;
}

function closeEditor(node) {
  const editor = node.querySelector('.editor');
  if (!editor) return false;
  editor.remove();
  node.classList.remove('editing');
  node.querySelector('.body').hidden = false;
  return true;
}

function cancelEdit(node) {
  if (closeEditor(node)) node.querySelector('.edit-button')?.focus();
}

function editorBusy(node, busy, message = '') {
  const editor = node.querySelector('.editor');
  if (!editor) return;
  editor.querySelector('textarea').readOnly = busy;
  editor.querySelector('[type=submit]').disabled = busy;
  editor.classList.toggle('saving', busy);
  editor.querySelector('.editor-error').textContent = message;
}

function saveEdit(node) {
  const editor = node.querySelector('.editor');
  if (!editor || editor.classList.contains('saving')) return;
  const body = cleanBody(editor.querySelector('textarea').value);
  if (!body.trim()) return editorBusy(node, false, 'A message cannot be empty: use Delete to remove it.');
  if (charCount(body) > MAX_BODY) return editorBusy(node, false, `The message is longer than ${MAX_BODY} characters.`);
  if (body === rawBodies.get(node)) return cancelEdit(node);
  const ref = `edit-${++S.refs}`;
  if (!S.joined || !send({ type: 'edit', room: ROOM, id: Number(node.dataset.id), body, ref })) {
    return editorBusy(node, false, 'Not connected: try again in a moment.');
  }
  S.edits.set(ref, node);
  editorBusy(node, true);
}

function onEdited(f) {
  const m = f.message;
  const mine = S.edits.get(f.ref);
  S.edits.delete(f.ref);
  const node = m && (S.bySeq.get(m.seq) || messageById(m.id));
  if (!node || node.classList.contains('deleted')) return;
  keepingPlace(() => {
    setBody(node, m.body, m.edited_at || new Date().toISOString());
    if (mine === node) cancelEdit(node);
  });
}

function confirmDelete(node) {
  S.deleteTarget = node;
  ui.dialogPreview.textContent = rawBodies.get(node) || '';
  ui.dialog.returnValue = '';
  ui.dialog.showModal();
}

// Runs however the dialog closed: its buttons (a method="dialog" form) or Escape.
function onDeleteDialogClosed() {
  const node = S.deleteTarget;
  S.deleteTarget = null;
  if (!node) return;
  if (ui.dialog.returnValue !== 'delete') return node.querySelector('.delete-button')?.focus();
  ui.list.focus({ preventScroll: true }); // the message and its buttons are about to go
  const ref = `delete-${++S.refs}`;
  if (!S.joined || !send({ type: 'delete', room: ROOM, id: Number(node.dataset.id), ref })) {
    return toast('Not connected: the message was not deleted. Try again in a moment.');
  }
  S.deletes.set(ref, node);
  node.classList.add('deleting');
}

function onDeleted(f) {
  S.deletes.delete(f.ref);
  const node = S.bySeq.get(f.seq) || messageById(f.id);
  if (!node) return;
  // Deleted elsewhere (another tab, a moderator) while this page was editing or asking about it.
  const hadFocus = node.contains(document.activeElement) || S.deleteTarget === node;
  if (S.deleteTarget === node) {
    S.deleteTarget = null;
    ui.dialog.close();
  }
  keepingPlace(() => markDeleted(node));
  if (hadFocus) ui.list.focus({ preventScroll: true });
}

// An error answering an edit or a delete; false when the ref was not one of those.
function onEditOrDeleteError(f) {
  const node = S.edits.get(f.ref) || S.deletes.get(f.ref);
  if (!node) return false;
  const problem = f.code === ERROR.NOT_FOUND ? 'This message no longer exists.' : f.detail || `Error: ${f.code}`;
  if (S.edits.delete(f.ref) && node.querySelector('.editor')) editorBusy(node, false, problem);
  else toast(problem);
  S.deletes.delete(f.ref);
  node.classList.remove('deleting');
  return true;
}

// ---------------------------------------------------------------- date separators and the unread divider

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function dayLabel(key) {
  const [year, month, day] = key.split('-').map(Number);
  const date = new Date(year, month - 1, day);
  const today = new Date();
  if (key === dayKey(today)) return 'Today';
  if (key === dayKey(new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1))) return 'Yesterday';
  return `${WEEKDAYS[date.getDay()]} ${day} ${MONTHS[month - 1]} ${year}`;
}

function separator(className, label) {
  const node = make('div', className);
  node.setAttribute('role', 'separator');
  node.append(make('span', 'separator-label'));
  setSeparatorLabel(node, label);
  return node;
}

function setSeparatorLabel(node, label) {
  if (node.getAttribute('aria-label') === label) return;
  node.setAttribute('aria-label', label);
  node.firstChild.textContent = label;
}

// One separator before the first message of each day (local time). Separators already in
// place are kept, so the log does not announce them again.
function refreshDaySeparators() {
  const spare = new Map([...ui.list.querySelectorAll('.day-separator')].map((node) => [node.dataset.day, node]));
  let previous = null;
  for (const node of ui.list.querySelectorAll('.message[data-day]')) {
    const day = node.dataset.day;
    if (day === previous) continue;
    previous = day;
    const start = node.previousElementSibling?.classList.contains('unread-divider') ? node.previousElementSibling : node;
    let mark = spare.get(day);
    spare.delete(day);
    if (mark) setSeparatorLabel(mark, dayLabel(day));
    else {
      mark = separator('day-separator', dayLabel(day));
      mark.dataset.day = day;
    }
    if (start.previousElementSibling !== mark) start.before(mark);
  }
  for (const node of spare.values()) node.remove();
}

// Before the first message someone else wrote after the read marker the page loaded with.
function placeUnreadDivider(messages) {
  if (S.lastRead === null) return null;
  const first = messages.find((m) => m.seq > S.lastRead && m.author !== ME && !m.deleted);
  const node = first && S.bySeq.get(first.seq);
  if (!node) return null;
  const divider = separator('unread-divider', 'New messages');
  node.before(divider);
  refreshDaySeparators();
  return divider;
}

// ---------------------------------------------------------------- scrolling and history

const isAtBottom = () => ui.list.scrollHeight - ui.list.scrollTop - ui.list.clientHeight < 48;

function scrollListTo(top) {
  ui.list.scrollTop = top;
  S.lastScrollTop = ui.list.scrollTop;
}

function scrollToBottom() {
  scrollListTo(ui.list.scrollHeight);
  ui.newButton.hidden = true;
}

function afterAppend(follow) {
  if (follow) scrollToBottom();
  else ui.newButton.hidden = false;
  scheduleRead(READ_DEBOUNCE);
}

function firstVisibleMessage() {
  const top = ui.list.getBoundingClientRect().top;
  for (const node of ui.list.querySelectorAll('.message')) if (node.getBoundingClientRect().bottom > top) return node;
  return null;
}

// Runs `change` (which may add, remove or resize messages anywhere) without moving what the
// reader is looking at: the bottom stays the bottom, otherwise the first visible message stays put.
// (overflow-anchor is off on the list: the browser's own anchoring fights these adjustments.)
function keepingPlace(change) {
  if (isAtBottom()) {
    change();
    return scrollListTo(ui.list.scrollHeight);
  }
  const anchor = firstVisibleMessage();
  const before = anchor?.getBoundingClientRect().top;
  change();
  if (anchor?.isConnected) scrollListTo(ui.list.scrollTop + anchor.getBoundingClientRect().top - before);
}

// Shows the unread divider near the top when it would be above the view at the bottom.
function revealUnread(divider) {
  scrollToBottom();
  const offset = divider.getBoundingClientRect().top - ui.list.getBoundingClientRect().top;
  if (offset < 0) scrollListTo(ui.list.scrollTop + offset - 8);
  ui.newButton.hidden = isAtBottom();
  scheduleRead(READ_DEBOUNCE);
}

function onScroll() {
  const top = ui.list.scrollTop;
  // Only the reader moving up asks for older messages, not the page placing the view itself.
  if (top < 80 && top < S.lastScrollTop) loadOlder();
  S.lastScrollTop = top;
  if (isAtBottom()) {
    ui.newButton.hidden = true;
    scheduleRead(READ_DEBOUNCE);
  }
}

const marker = make('div', 'history-marker');

function updateMarker() {
  if (!S.baselined || S.historyBusy) marker.replaceChildren('Loading…');
  else if (!S.hasMore) marker.replaceChildren('Beginning of the room');
  else marker.replaceChildren(button('Load earlier messages', 'btn btn-quiet btn-small', loadOlder));
}

function loadOlder() {
  if (S.historyBusy || !S.hasMore || !S.joined || S.firstSeq === null) return;
  S.historyBusy = send({ type: 'history', room: ROOM, before: S.firstSeq, limit: HISTORY_LIMIT, ref: 'history' });
  keepingPlace(updateMarker); // "Loading…" is not as tall as the button it replaces
}

function fillViewport() {
  if (S.hasMore && ui.list.scrollHeight <= ui.list.clientHeight + 80) loadOlder();
}

function onHistory(f) {
  S.historyBusy = false;
  const older = (f.messages || [])
    .filter((m) => (S.firstSeq === null || m.seq < S.firstSeq) && !S.bySeq.has(m.seq))
    .sort((a, b) => a.seq - b.seq);
  keepingPlace(() => {
    const fragment = document.createDocumentFragment();
    for (const m of older) {
      const node = fillMessage(buildMessage(m.author), m);
      S.bySeq.set(m.seq, node);
      fragment.append(node);
    }
    marker.after(fragment);
    if (older.length) S.firstSeq = older[0].seq;
    S.hasMore = Boolean(f.has_more) && older.length > 0 && S.firstSeq > 1;
    updateMarker();
    refreshDaySeparators();
  });
  fillViewport();
}

// ---------------------------------------------------------------- joining and catching up

function sendJoin() {
  const frame = { type: 'join', room: ROOM, ref: `join-${++S.joinCount}` };
  if (S.baselined) frame.since = S.lastSeq;
  S.joining = send(frame);
}

function catchUp() {
  clearTimeout(S.timers.catchUp);
  if (S.joining || S.stopped || !S.ws) return;
  sendJoin();
}

function noteSeq(seq) {
  S.maxSeen = Math.max(S.maxSeen, seq);
  if (seq > S.lastSeq) catchUp();
}

function onJoined(f) {
  const before = S.lastSeq;
  const first = !S.baselined;
  const follow = first || isAtBottom();
  const fresh = !S.joined; // first `joined` on this socket: resend what is still pending
  Object.assign(S, { joined: true, joining: false, attempt: 0, authRetried: false });
  showInfo(f.info);
  renderPresence(f.presence || []);
  const messages = (f.messages || []).slice().sort((a, b) => a.seq - b.seq);
  if (first) {
    S.baselined = true;
    if (messages.length) S.lastSeq = messages[0].seq - 1;
    S.hasMore = messages.length > 0 && messages[0].seq > 1;
  }
  let added = 0;
  for (const m of messages) {
    if (!acceptLive(m)) continue;
    added += 1;
    if (!first) noticeWhileHidden(m, false);
  }
  const divider = first ? placeUnreadDivider(messages) : null;
  setStatus('live', 'Live');
  updateMarker();
  if (fresh) flushOutbox();
  if (!f.complete) catchUp();
  else if (S.maxSeen > S.lastSeq) {
    // Progress: ask again now. None: the server may still be committing; ask again shortly.
    if (S.lastSeq > before) catchUp();
    else S.timers.catchUp = setTimeout(catchUp, 2000);
  }
  if (divider) revealUnread(divider);
  else if (added || first) afterAppend(follow);
  if (first) fillViewport();
}

function showInfo(info) {
  if (!info) return;
  if (info.name) {
    ui.name.textContent = S.roomName = info.name;
    S.baseTitle = `${info.name} · Channels Chat`;
    updateTitle();
  }
  ui.topic.textContent = info.topic || '';
}

function onMessage(f) {
  if (!f.message) return;
  const follow = isAtBottom();
  if (!acceptLive(f.message)) return;
  afterAppend(follow);
  noticeWhileHidden(f.message, true);
}

function onRoomClosed(f) {
  const reasons = {
    archived: 'This room was archived.',
    deleted: 'This room was deleted.',
    removed: 'You were removed from this room.',
    banned: 'You were banned from this room.',
  };
  showBanner(ui.closed, reasons[f.reason] || 'This room was closed.');
  stop();
}

function roomUnavailable(f) {
  const titles = {
    [ERROR.NOT_FOUND]: 'This room does not exist or has been archived.',
    [ERROR.FORBIDDEN]: 'You do not have access to this room.',
  };
  ui.roomError.replaceChildren(make('p', 'room-error-title', titles[f.code]), make('p', 'muted', f.detail || ''));
  const back = make('a', 'btn btn-primary', 'Back to rooms');
  back.href = document.querySelector('.back-link')?.href || '/';
  ui.roomError.append(back);
  ui.roomError.hidden = false;
  for (const node of [ui.wrap, ui.form, ui.typing]) node.hidden = true;
  stop();
}

// ---------------------------------------------------------------- sending

function transmit(entry) {
  entry.status = 'pending';
  entry.node.classList.remove('failed');
  entry.node.classList.add('pending');
  entry.node.querySelector('.actions')?.remove();
  setNote(entry.node, 'sending…');
  if (S.joined) send({ type: 'send', room: ROOM, body: entry.body, client_id: entry.cid, ref: entry.cid });
}

const outboxIds = (status) => [...S.outbox.values()].filter((e) => e.status === status).map((e) => e.cid);

function flushOutbox() {
  for (const entry of S.outbox.values()) if (entry.status === 'pending') transmit(entry);
}

function queueMessage(body) {
  const entry = { cid: newClientId(), body, createdAt: new Date().toISOString(), status: 'pending', retries: 0, seq: null };
  const node = buildMessage(ME);
  node.classList.add('own', 'outbox', 'pending');
  node.dataset.clientId = entry.cid;
  node.dataset.author = ME;
  renderText(node.querySelector('.body'), body);
  setTime(node, entry.createdAt);
  entry.node = node;
  S.outbox.set(entry.cid, entry);
  ui.list.append(node);
  refreshDaySeparators();
  scrollToBottom();
  transmit(entry);
}

function onAck(f) {
  const entry = S.outbox.get(f.client_id);
  if (!entry) return; // the live message already took its place
  Object.assign(entry, { status: 'acked', seq: f.seq, id: f.id });
  const node = entry.node;
  node.classList.remove('pending', 'failed');
  node.dataset.seq = f.seq;
  node.dataset.id = f.id;
  setNote(node, '');
  if (S.bySeq.has(f.seq)) {
    S.outbox.delete(entry.cid);
    node.remove();
  } else if (f.seq === S.lastSeq + 1) {
    const follow = isAtBottom();
    acceptLive({ id: f.id, seq: f.seq, room: ROOM, author: ME, body: entry.body, created_at: entry.createdAt, client_id: entry.cid });
    afterAppend(follow);
  } else {
    noteSeq(f.seq);
  }
}

function failEntry(entry, f) {
  if (f.code === ERROR.RATE_LIMITED && entry.retries < RATE_RETRIES) {
    entry.retries += 1;
    setNote(entry.node, 'sending… (slowed down)');
    const delay = 1000 * entry.retries + Math.random() * 500;
    setTimeout(() => { if (S.outbox.get(entry.cid) === entry && entry.status === 'pending') transmit(entry); }, delay);
    return;
  }
  entry.status = 'failed';
  entry.node.classList.remove('pending');
  entry.node.classList.add('failed');
  setNote(entry.node, `Not sent: ${f.detail || f.code}`);
  const actions = make('div', 'actions');
  actions.append(
    button('Retry', 'btn btn-small retry', () => { entry.retries = 0; transmit(entry); }),
    button('Discard', 'btn btn-small btn-quiet discard', () => { S.outbox.delete(entry.cid); entry.node.remove(); }),
  );
  entry.node.querySelector('.actions')?.remove();
  entry.node.querySelector('.message-main').append(actions);
}

// Drop leading blank lines and trailing whitespace; keep indentation inside the text.
const cleanBody = (text) => text.replace(/^\s*\n/, '').replace(/\s+$/, '');

function submitComposer() {
  if (ui.input.disabled) return;
  const body = cleanBody(ui.input.value);
  if (!body.trim()) return;
  if (charCount(body) > MAX_BODY) {
    updateCounter();
    ui.counter.classList.add('shake');
    return;
  }
  ui.input.value = '';
  autosize();
  updateCounter();
  queueMessage(body);
}

function updateCounter() {
  const count = charCount(ui.input.value);
  const near = count > MAX_BODY * 0.9;
  ui.counter.textContent = near ? `${count} / ${MAX_BODY}` : '';
  ui.counter.classList.toggle('over', count > MAX_BODY);
  ui.counter.classList.remove('shake');
  ui.send.disabled = ui.input.disabled || count > MAX_BODY;
}

function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

function maybeSendTyping() {
  const now = Date.now();
  if (!S.joined || !ui.input.value.trim() || now - S.lastTypingSent < TYPING_EVERY) return;
  if (send({ type: 'typing', room: ROOM, ref: 'typing' })) S.lastTypingSent = now;
}

// ---------------------------------------------------------------- presence, typing, read marker

function renderPresence(users) {
  const names = [...new Set(users)].sort((a, b) => a.localeCompare(b));
  ui.presence.replaceChildren(...names.map((name) => {
    const item = make('li', 'presence-user');
    item.dataset.username = name;
    item.append(avatar(name), make('span', 'presence-name', name));
    if (name === ME) item.append(make('span', 'muted', ' (you)'));
    return item;
  }));
  for (const count of ui.presenceCounts) if (count) count.textContent = String(names.length);
}

function renderTyping() {
  const names = [...S.typers.keys()];
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length > 1 && names.length <= 3) text = `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`;
  else if (names.length > 3) text = 'Several people are typing…';
  ui.typing.textContent = text;
}

function stopTyping(name) {
  clearTimeout(S.typers.get(name));
  S.typers.delete(name);
  renderTyping();
}

function onTyping(f) {
  if (!f.username || f.username === ME) return;
  clearTimeout(S.typers.get(f.username));
  S.typers.set(f.username, setTimeout(() => stopTyping(f.username), TYPING_SHOWN));
  renderTyping();
}

function scheduleRead(delay) {
  clearTimeout(S.timers.read);
  S.timers.read = setTimeout(sendRead, delay); // debounced: one `read` per burst of messages
}

function sendRead() {
  if (document.visibilityState !== 'visible' || !S.joined || !isAtBottom()) return;
  if (S.lastSeq <= S.lastReadSent) return;
  if (send({ type: 'read', room: ROOM, seq: S.lastSeq, ref: 'read' })) S.lastReadSent = S.lastSeq;
}

// ---------------------------------------------------------------- hidden tab: title badge and notifications

const NOTIFY_KEY = 'chat.notify';
const notificationsSupported = () => 'Notification' in window;

function notifyChosen() {
  try { return localStorage.getItem(NOTIFY_KEY) === 'on'; } catch { return false; }
}

function chooseNotify(on) {
  try { localStorage.setItem(NOTIFY_KEY, on ? 'on' : 'off'); } catch { /* private mode: this page only */ }
  S.notifyOn = on;
}

const notifyEnabled = () => notificationsSupported() && Notification.permission === 'granted' && S.notifyOn;

function renderNotifyButton() {
  if (!ui.notify) return;
  ui.notify.hidden = !notificationsSupported();
  ui.notify.setAttribute('aria-pressed', String(notifyEnabled()));
  ui.notify.title = notifyEnabled()
    ? 'Desktop notifications are on while this tab is in the background. Click to turn them off.'
    : 'Get a desktop notification for new messages while this tab is in the background.';
}

// The permission prompt only ever follows this click, never a page load.
async function toggleNotify() {
  if (notifyEnabled()) {
    chooseNotify(false);
    return renderNotifyButton();
  }
  const permission = await Notification.requestPermission(); // answers at once when already decided
  chooseNotify(permission === 'granted');
  if (permission === 'denied') toast('Notifications are blocked for this site: allow them in your browser settings.');
  renderNotifyButton();
}

function showNotification(m) {
  try {
    const notification = new Notification(`${m.author} in ${S.roomName}`, { body: Array.from(m.body).slice(0, 240).join('') });
    notification.onclick = () => { window.focus(); notification.close(); };
  } catch {
    // Android Chrome only notifies through a service worker: the title badge still counts.
  }
}

function updateTitle() {
  const title = S.unseen ? `(${S.unseen}) ${S.baseTitle}` : S.baseTitle;
  if (document.title !== title) document.title = title;
}

function noticeWhileHidden(m, live) {
  if (!document.hidden || m.author === ME || m.deleted) return;
  S.unseen += 1;
  updateTitle();
  if (live && notifyEnabled()) showNotification(m);
}

function onVisibilityChange() {
  if (document.hidden) return;
  S.unseen = 0;
  updateTitle();
  refreshDaySeparators(); // "Today" may have become "Yesterday" while the tab was away
  scheduleRead(0);
}

function wireNotifications() {
  S.notifyOn = notifyChosen();
  ui.notify?.addEventListener('click', toggleNotify);
  renderNotifyButton();
}

// ---------------------------------------------------------------- errors

function onError(f) {
  const ref = typeof f.ref === 'string' ? f.ref : '';
  const entry = S.outbox.get(ref);
  if (entry) return failEntry(entry, f);
  if (onEditOrDeleteError(f)) return;
  if (ref.startsWith('join-') || (!S.baselined && f.room === ROOM)) {
    S.joining = false;
    if (f.code === ERROR.NOT_FOUND || f.code === ERROR.FORBIDDEN) return roomUnavailable(f);
    S.timers.catchUp = setTimeout(catchUp, 2000);
    if (f.code === ERROR.RATE_LIMITED) return;
  }
  if (ref === 'history') {
    S.historyBusy = false;
    updateMarker();
  }
  if (ref === 'typing' || ref === 'read' || ref === 'ping') return; // best effort, not worth a toast
  toast(f.detail || `Error: ${f.code}`);
}

// ---------------------------------------------------------------- connection

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${cfg.wsPath}`;
}

function clearReconnect() {
  clearTimeout(S.timers.reconnect);
  clearInterval(S.timers.countdown);
  S.timers.reconnect = S.timers.countdown = null;
}

function connect() {
  clearReconnect();
  if (S.stopped) return;
  setStatus('connecting', 'Connecting…');
  const ws = new WebSocket(wsUrl());
  S.ws = ws;
  ws.addEventListener('open', () => { if (ws === S.ws) onOpen(); });
  ws.addEventListener('message', (event) => { if (ws === S.ws) onFrame(event.data); });
  ws.addEventListener('close', (event) => onClose(ws, event.code));
}

function onOpen() { sendJoin(); startPing(); }

const handlers = {
  joined: onJoined, message: onMessage, ack: onAck, history: onHistory, typing: onTyping,
  presence: (f) => renderPresence(f.users || []), message_deleted: onDeleted, message_edited: onEdited,
  room_closed: onRoomClosed, pong: onPong, error: onError,
};

function onFrame(data) {
  let frame = null;
  try { frame = JSON.parse(data); } catch { /* not ours to fix */ }
  if (!frame || typeof frame !== 'object') return;
  if (frame.room != null && frame.room !== ROOM) return; // only one room on this page
  handlers[frame.type]?.(frame);
}

function onClose(ws, code) {
  if (ws !== S.ws) return;
  Object.assign(S, { ws: null, joined: false, joining: false, historyBusy: false });
  stopPing();
  updateMarker();
  if (S.stopped) return setStatus('offline', 'Offline');
  if (code === CLOSE.DEACTIVATED) {
    showBanner(ui.banner, 'Your account has been deactivated.');
    return stop();
  }
  if (code === CLOSE.SESSION_ENDED) {
    // A password change cycles the session cookie: one more try before giving up.
    if (S.authRetried) {
      showBanner(ui.signedOut);
      return stop();
    }
    S.authRetried = true;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  clearReconnect();
  const ceiling = Math.min(BACKOFF_CAP, BACKOFF_BASE * BACKOFF_FACTOR ** Math.min(S.attempt, 20));
  const delay = Math.random() * ceiling; // full jitter
  S.attempt += 1;
  const due = Date.now() + delay;
  const tick = () => {
    if (!navigator.onLine) return setStatus('offline', 'Offline');
    const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    setStatus('reconnecting', `Reconnecting in ${seconds}s…`);
  };
  tick();
  S.timers.countdown = setInterval(tick, 1000);
  S.timers.reconnect = setTimeout(connect, delay);
}

function stop() {
  S.stopped = true;
  clearReconnect();
  stopPing();
  clearTimeout(S.timers.catchUp);
  setComposerEnabled(false);
  const ws = S.ws;
  Object.assign(S, { ws: null, joined: false, joining: false });
  ws?.close(CLOSE.NORMAL);
  setStatus('offline', 'Offline');
}

function startPing() {
  stopPing();
  S.timers.ping = setInterval(() => {
    if (send({ type: 'ping', ref: 'ping' }) && !S.timers.pong) S.timers.pong = setTimeout(onDead, PONG_TIMEOUT);
  }, PING_EVERY);
}

function stopPing() {
  clearInterval(S.timers.ping);
  clearTimeout(S.timers.pong);
  S.timers.ping = S.timers.pong = null;
}

function onPong(f) {
  clearTimeout(S.timers.pong);
  S.timers.pong = null;
  const seq = Number(f.seqs?.[ROOM]);
  if (seq > S.lastSeq) noteSeq(seq);
}

// No pong in time: the connection is dead even if the browser has not noticed.
function onDead() {
  S.timers.pong = null;
  const ws = S.ws;
  if (!ws) return;
  onClose(ws, CLOSE.NO_PONG);
  try { ws.close(CLOSE.NO_PONG, 'no pong'); } catch { /* already closing */ }
}

// ---------------------------------------------------------------- wiring

function wire() {
  ui.list.prepend(marker);
  updateMarker();
  ui.list.addEventListener('scroll', onScroll, { passive: true });
  ui.dialog.addEventListener('close', onDeleteDialogClosed);
  wireNotifications();
  ui.newButton.addEventListener('click', () => { scrollToBottom(); scheduleRead(0); });
  ui.form.addEventListener('submit', (event) => { event.preventDefault(); submitComposer(); });
  ui.input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitComposer();
    }
  });
  ui.input.addEventListener('input', () => { autosize(); updateCounter(); maybeSendTyping(); });
  ui.presenceToggle?.addEventListener('click', () => {
    const open = ui.layout.classList.toggle('show-presence');
    ui.presenceToggle.setAttribute('aria-expanded', String(open));
  });
  document.addEventListener('visibilitychange', onVisibilityChange);
  window.addEventListener('focus', () => scheduleRead(0));
  window.addEventListener('online', () => { if (S.timers.reconnect) connect(); });
  window.chat = Object.freeze({
    state: () => ({
      lastSeq: S.lastSeq,
      pending: outboxIds('pending'),
      failed: outboxIds('failed'),
      connected: S.joined && S.ws !== null && S.ws.readyState === WebSocket.OPEN,
    }),
    socket: () => S.ws,
  });
  updateCounter();
  connect();
}

wire();
