// Room page client: one WebSocket, one room (or direct conversation), speaking the wire protocol
// of docs/protocol.md. User data is rendered with textContent, with one exception: a message's
// `html`, which the server made from its Markdown and cleaned with an allow-list of tags and link
// schemes (chat/formatting.py), is inserted as HTML. Nothing else the users wrote ever is.

import { openDirectPicker, paintAvatars, userHue } from './direct.js';
import { handleUnreadFrame, mentionTotal, startUnread, unreadConnected } from './unread.js';
import { onMembers, onRoomInvited, onRoomUpdated, wireManage } from './manage.js';
import {
  OUTAGE_NOTICE, groupMessages, hideOutage, lastOwnMessage, moveWithinMessage, reconnectDelay, showOutage,
} from './flow.js';
import { wirePresencePanel } from './panel.js';
import { COPY_LINK_LABEL, LINK_ICON, copyMessageLink, messageLinks } from './permalink.js';
import { wireMentions } from './mentions.js';
import { renderAttachments, wireAttachments } from './files.js';
import { connectSearch, handleSearchFrame } from './search.js';

const cfg = JSON.parse(document.getElementById('chat-config').textContent);
const ROOM = cfg.room;
const ME = cfg.username;
const DIRECT = cfg.kind === 'direct';
const MANAGER = Boolean(cfg.canManage); // the room's creator, a moderator or staff: may delete anyone's message
const MAX_BODY = Number(cfg.maxBody) || 4000;
const MAX_FILES = Number(cfg.maxFiles) || 10; // attachments on one message (CHAT_UPLOAD_MAX_FILES)
const DELETED_AUTHOR = '[deleted]'; // a message whose author's account is gone

// Timings in ms (the reconnect delays are flow.js's).
const OPEN_TIMEOUT = 5000; // a handshake that hangs (no answer at all) is given up and tried again
const PING_EVERY = 25000, PONG_TIMEOUT = 10000;
const TYPING_EVERY = 2000, TYPING_SHOWN = 3000, READ_DEBOUNCE = 1000;
const HISTORY_LIMIT = 50, HISTORY_MAX = 100, RATE_RETRIES = 5;
const UNREAD_REACH = 1000; // at most this many messages are loaded to reach the first unread one

// The wire protocol's close and error codes this page acts on: a copy of chat/realtime/codes.py's,
// which tests/unit/test_codes.py compares with it.
const CLOSE = Object.freeze({ NORMAL: 1000, NO_PONG: 4000, SESSION_ENDED: 4401, DEACTIVATED: 4403 });
const ERROR = Object.freeze({ NOT_FOUND: 'not_found', FORBIDDEN: 'forbidden', RATE_LIMITED: 'rate_limited' });

// The reaction picker's choices; any other emoji can be typed in.
const EMOJI = [
  ['👍', 'thumbs up'], ['👎', 'thumbs down'], ['😄', 'smiling face'], ['🎉', 'party popper'],
  ['❤️', 'red heart'], ['🚀', 'rocket'], ['👀', 'eyes'], ['✅', 'check mark'],
  ['😂', 'tears of joy'], ['🙏', 'folded hands'], ['🔥', 'fire'], ['💯', 'hundred points'],
  ['😮', 'surprised face'], ['😢', 'crying face'], ['🤔', 'thinking face'], ['👏', 'clapping hands'],
];
const EMOJI_COLUMNS = 8;

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $('room-layout'), list: $('messages'), wrap: $('messages-wrap'), newButton: $('new-messages'),
  status: $('status'), name: $('room-name-text'), topic: $('room-topic'),
  presence: $('presence'), presenceCounts: [$('presence-count'), $('presence-count-panel')],
  presenceToggle: $('presence-toggle'), presenceOnline: $('presence-online'), presenceMore: $('presence-more'),
  typing: $('typing'),
  form: $('composer'), input: $('composer-input'), send: $('composer-send'), counter: $('composer-counter'),
  closed: $('room-closed'), signedOut: $('signed-out'), banner: $('connection-banner'),
  roomError: $('room-error'), toasts: $('toasts'), notify: $('notify-toggle'),
  dialog: $('delete-dialog'), dialogPreview: $('delete-dialog-preview'),
  threadPanel: $('thread-panel'), threadList: $('thread-messages'), threadForm: $('thread-composer'),
  threadInput: $('thread-input'), threadSend: $('thread-send'), threadCounter: $('thread-counter'),
  directs: $('sidebar-direct'), personCard: $('person-card'), picker: null,
  drop: document.querySelector('.room-main'),
};

// The two composers: the room's, and the open thread's.
const composers = {
  main: { form: ui.form, input: ui.input, send: ui.send, counter: ui.counter },
  thread: { form: ui.threadForm, input: ui.threadInput, send: ui.threadSend, counter: ui.threadCounter },
};

// The single piece of mutable state.
const S = {
  ws: null,
  joined: false, // a `joined` arrived on the current socket
  joining: false, // a join (first or catch-up) is in flight
  baselined: false, // the first `joined` has set where the room starts for us
  stopped: false, // no more reconnects (signed out, deactivated, room closed or unavailable)
  lastSeq: 0, // highest contiguous seq received (replies included: they take seqs too)
  firstSeq: null, // lowest seq received (history pages below it)
  maxSeen: 0, // highest seq heard of (gap detection)
  lastRev: null, // highest rev applied in order (docs/protocol.md: every change converges)
  maxRev: 0, // highest rev heard of
  hasMore: true,
  historyBusy: false,
  messages: new Map(), // id -> the newest copy held of each message (by rev), replies included
  bySeq: new Map(), // seq -> its element in the room's flow, or null for a reply (shown in its thread)
  outbox: new Map(), // client_id -> {cid, body, replyTo, attachments, createdAt, node, status, retries, seq}
  typers: new Map(), // username -> timeout id
  attempt: 0, // reconnects since the last `joined`
  downSince: null, // when the connection was lost (null while joined)
  authRetried: false, // one reconnect after a 4401 already tried
  joinCount: 0,
  lastTypingSent: 0,
  lastReadSent: 0,
  lastRead: Number.isInteger(cfg.lastRead) ? cfg.lastRead : null, // read marker when the page loaded
  unreadPlaced: false, // the "New messages" line has been placed (or there is none to place)
  newBelow: new Set(), // elements of others' new messages below the view, not yet scrolled to
  lastScrollTop: 0,
  refs: 0, // counter for edit/delete/react refs
  edits: new Map(), // ref -> message element with an edit in flight
  deletes: new Map(), // ref -> message element with a delete in flight
  deleteTarget: null, // message element the delete dialog is about
  thread: null, // the open thread: {id, loaded, hasMore, firstSeq, opener}
  current: null, // the message whose buttons are in the Tab order (one at a time)
  picker: null, // the reaction picker's message id and the button that opened it
  personOpener: null, // the author name that opened the person card
  unseen: 0, // messages from others that arrived while the tab was hidden
  notifyOn: false, // the user asked for desktop notifications (and may have since revoked the permission)
  baseTitle: document.title,
  timers: { reconnect: null, countdown: null, open: null, ping: null, pong: null, read: null, catchUp: null },
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

const SVG = 'http://www.w3.org/2000/svg';

function icon(path) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '15');
  svg.setAttribute('height', '15');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const shape = document.createElementNS(SVG, 'path');
  shape.setAttribute('fill', 'currentColor');
  shape.setAttribute('d', path);
  svg.append(shape);
  return svg;
}

const ICONS = {
  react: 'M8 1a7 7 0 1 0 7 7h-1.5A5.5 5.5 0 1 1 8 2.5zM5.5 6a1 1 0 1 0 0 2 1 1 0 0 0 0-2m5 0a1 1 0 1 0 0 2 1 1 0 0 0 0-2M4.8 9.5a3.6 3.6 0 0 0 6.4 0zM12.25 0v1.75H10.5v1.5h1.75V5h1.5V3.25h1.75v-1.5h-1.75V0z',
  reply: 'M2 3.5A1.5 1.5 0 0 1 3.5 2h9A1.5 1.5 0 0 1 14 3.5v6a1.5 1.5 0 0 1-1.5 1.5H7l-3.2 2.7A.5.5 0 0 1 3 13.3V11h.5A1.5 1.5 0 0 1 2 9.5zm1.5 0v6H4.5v1.6L6.5 9.5h6v-6z',
};

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

function setComposerEnabled(enabled) {
  for (const c of Object.values(composers)) {
    c.input.disabled = c.send.disabled = !enabled;
    c.attach?.setEnabled(enabled);
  }
}

function avatar(name, className = '') {
  const node = make('span', `avatar ${className}`.trim(), Array.from(name)[0]?.toUpperCase() || '?');
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

// Renders a body as text nodes, mention spans and http(s) links (a message not yet stored, which
// has no server-made HTML yet).
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

// Highlights the @mentions in the text of server-made HTML (not in links or code).
function markMentions(target) {
  const walker = document.createTreeWalker(target, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.data.includes('@') && !node.parentElement.closest('a, code, pre')
      ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT),
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  let mentioned = false;
  for (const text of texts) {
    const fragment = document.createDocumentFragment();
    mentioned = appendMentions(fragment, text.data) || mentioned;
    text.replaceWith(fragment);
  }
  return mentioned;
}

// ---------------------------------------------------------------- rendering messages

const rawBodies = new WeakMap(); // message element -> its body as sent (for editing)
const shownBodies = new WeakMap(); // message element -> the html or text its body shows

// `context`: 'main' (the room's flow) or 'thread' (the thread panel).
function buildMessage(author, context = 'main') {
  const node = make('div', 'message');
  node.dataset.context = context;
  node.tabIndex = -1; // the arrow keys move the focus from message to message
  const meta = make('div', 'meta');
  meta.append(authorLabel(author), make('time', 'time'), make('span', 'note'));
  const main = make('div', 'message-main');
  main.append(meta, make('div', 'body'));
  const face = avatar(author);
  if (canMessage(author)) {
    face.classList.add('avatar-button');
    face.addEventListener('click', () => openPersonCard(author, face.parentElement.querySelector('.author')));
  }
  node.append(face, main);
  return node;
}

const canMessage = (name) => name !== ME && name !== DELETED_AUTHOR;

// Another person's name is a button: it offers to message them.
function authorLabel(name) {
  if (!canMessage(name)) return make('span', 'author', name);
  const label = button(name, 'author author-button', (event) => openPersonCard(name, event.currentTarget));
  label.setAttribute('aria-haspopup', 'dialog');
  return label;
}

const pad = (n) => String(n).padStart(2, '0');
const dayKey = (date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
const clock = (date) => `${pad(date.getHours())}:${pad(date.getMinutes())}`;

function setTime(node, iso) {
  const date = iso ? new Date(iso) : new Date();
  if (Number.isNaN(date.getTime())) return;
  const time = node.querySelector('.time');
  time.dateTime = date.toISOString();
  time.textContent = clock(date);
  time.title = date.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  node.dataset.day = dayKey(date);
}

// "today at 14:05", "yesterday at 09:12", "Mon 3 Jun 2024 at 18:00".
function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const day = dayLabel(dayKey(date));
  return `${day === 'Today' || day === 'Yesterday' ? day.toLowerCase() : day} at ${clock(date)}`;
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

// The server's HTML once the message is stored; until then (our own, pending) the text as typed.
function setBody(node, m) {
  rawBodies.set(node, m.body);
  const body = node.querySelector('.body');
  const rich = typeof m.html === 'string' && m.html !== '';
  const shown = rich ? `html:${m.html}` : `text:${m.body}`;
  if (shownBodies.get(node) !== shown) {
    shownBodies.set(node, shown);
    body.classList.toggle('rich', rich);
    let mentionsMe;
    if (rich) {
      body.innerHTML = m.html; // sanitised by the server (chat/formatting.py); see the header
      mentionsMe = markMentions(body);
    } else {
      mentionsMe = renderText(body, m.body);
    }
    const mentioned = mentionsMe && m.author !== ME;
    node.classList.toggle('mentioned', mentioned);
    node.querySelector('.mention-flag')?.remove();
    if (mentioned) node.querySelector('.author').after(make('span', 'visually-hidden mention-flag', 'mentions you'));
  }
  setEdited(node, m.edited_at);
}

function markDeleted(node) {
  closeEditor(node);
  if (S.picker && String(S.picker.id) === node.dataset.id) closeEmojiPicker(false);
  node.classList.add('deleted');
  node.classList.remove('mentioned', 'deleting');
  node.querySelector('.mention-flag')?.remove();
  node.querySelector('.edited')?.remove();
  const body = node.querySelector('.body');
  body.classList.remove('rich');
  body.textContent = 'message deleted';
  shownBodies.delete(node);
  const name = node.querySelector('.author');
  if (name.tagName === 'BUTTON') name.replaceWith(make('span', 'author', name.textContent)); // nothing to act on
  node.querySelector('.avatar-button')?.classList.remove('avatar-button');
}

function fillMessage(node, m) {
  node.dataset.seq = m.seq;
  node.dataset.id = m.id;
  node.dataset.author = m.author;
  if (m.client_id) node.dataset.clientId = m.client_id;
  if (m.reply_to != null) node.dataset.replyTo = m.reply_to;
  node.classList.toggle('own', m.author === ME);
  setTime(node, m.created_at);
  if (m.deleted) markDeleted(node);
  else setBody(node, m);
  renderAttachments(node, m); // none on a deleted message
  renderReactions(node, m);
  renderThreadSummary(node, m);
  renderTools(node); // after the id: a just-acked message of ours gets its controls here
  applyRoving(node);
  if (node.parentElement) groupMessages(node.parentElement);
  return node;
}

// The focus leaves a control that is about to go for its message, not for the page's top.
function keepFocusIn(node, going) {
  if (going?.contains(document.activeElement)) node.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- reactions

function reactionLabel(emoji, users) {
  const names = users.length > 12 ? `${users.slice(0, 12).join(', ')} and ${users.length - 12} others` : users.join(', ');
  return `${names} reacted with ${emoji}`;
}

function renderReactions(node, m) {
  const entries = m.deleted ? [] : Object.entries(m.reactions || {}).filter(([, users]) => Array.isArray(users) && users.length);
  let row = node.querySelector('.reactions');
  if (!entries.length) {
    keepFocusIn(node, row);
    row?.remove();
    return;
  }
  if (!row) {
    row = make('div', 'reactions');
    row.setAttribute('role', 'group');
    row.setAttribute('aria-label', 'Reactions');
    const more = button('', 'reaction reaction-add', (event) => openEmojiPicker(node, event.currentTarget));
    more.append(icon(ICONS.react));
    more.setAttribute('aria-label', 'Add reaction');
    more.title = 'Add reaction';
    row.append(more);
    (node.querySelector('.message-main > .attachments-shown') || node.querySelector('.body')).after(row);
  }
  const chips = new Map([...row.querySelectorAll('.reaction[data-emoji]')].map((chip) => [chip.dataset.emoji, chip]));
  let cursor = row.firstElementChild;
  // In the order people reacted; chips already in place stay put (and keep the focus).
  for (const [emoji, users] of entries) {
    let chip = chips.get(emoji);
    chips.delete(emoji);
    if (!chip) {
      chip = button('', 'reaction', () => toggleReaction(node, emoji));
      chip.dataset.emoji = emoji;
      chip.append(make('span', 'reaction-emoji', emoji), make('span', 'reaction-count'));
    }
    chip.setAttribute('aria-pressed', String(users.includes(ME)));
    chip.querySelector('.reaction-count').textContent = String(users.length);
    const label = reactionLabel(emoji, users);
    chip.title = label;
    chip.setAttribute('aria-label', label);
    if (chip === cursor) cursor = cursor.nextElementSibling;
    else row.insertBefore(chip, cursor);
  }
  for (const chip of chips.values()) {
    keepFocusIn(node, chip);
    chip.remove();
  }
}

function toggleReaction(node, emoji) {
  const m = S.messages.get(Number(node.dataset.id));
  const mine = Boolean(m?.reactions?.[emoji]?.includes(ME));
  sendReaction(Number(node.dataset.id), emoji, !mine);
}

function sendReaction(id, emoji, on) {
  if (!S.joined || !send({ type: 'react', room: ROOM, id, emoji, on, ref: `react-${++S.refs}` })) {
    toast('Not connected: the reaction was not sent. Try again in a moment.');
  }
}

function emojiPicker() {
  if (ui.picker) return ui.picker;
  const picker = make('div', 'popover emoji-picker');
  picker.id = 'emoji-picker';
  picker.hidden = true;
  picker.setAttribute('role', 'dialog');
  picker.setAttribute('aria-label', 'Add a reaction');
  const grid = make('div', 'emoji-grid');
  grid.setAttribute('role', 'group');
  grid.setAttribute('aria-label', 'Common reactions');
  for (const [emoji, name] of EMOJI) {
    const choice = button(emoji, 'emoji-choice', () => pickEmoji(emoji));
    choice.setAttribute('aria-label', name);
    choice.title = name;
    grid.append(choice);
  }
  const other = make('form', 'emoji-other');
  other.noValidate = true;
  const label = make('label', 'visually-hidden', 'Any emoji');
  label.htmlFor = 'emoji-other-input';
  const input = make('input', 'emoji-other-input');
  Object.assign(input, { id: 'emoji-other-input', type: 'text', placeholder: 'Any emoji', maxLength: 32, autocomplete: 'off' });
  const add = make('button', 'btn btn-small', 'Add');
  add.type = 'submit';
  other.append(label, input, add);
  other.addEventListener('submit', (event) => {
    event.preventDefault();
    const emoji = input.value.trim();
    if (emoji) pickEmoji(emoji);
  });
  picker.append(grid, other);
  picker.addEventListener('keydown', onPickerKey);
  document.body.append(picker);
  ui.picker = picker;
  return picker;
}

function openEmojiPicker(node, opener) {
  const id = Number(node.dataset.id);
  if (S.picker?.id === id && S.picker.opener === opener && !ui.picker.hidden) return closeEmojiPicker(true);
  closePersonCard(false);
  const picker = emojiPicker();
  S.picker = { id, opener };
  picker.querySelector('input').value = '';
  picker.hidden = false;
  placePopover(picker, opener);
  opener.setAttribute('aria-expanded', 'true');
  picker.querySelector('.emoji-choice').focus();
}

function closeEmojiPicker(restoreFocus) {
  if (!S.picker) return;
  const { id, opener } = S.picker;
  S.picker = null;
  ui.picker.hidden = true;
  opener.setAttribute('aria-expanded', 'false');
  if (!restoreFocus) return;
  if (opener.isConnected) opener.focus();
  else nodesOf(id)[0]?.focus();
}

function pickEmoji(emoji) {
  const { id } = S.picker;
  closeEmojiPicker(true);
  const mine = Boolean(S.messages.get(id)?.reactions?.[emoji]?.includes(ME));
  sendReaction(id, emoji, !mine); // choosing one's own reaction again takes it back
}

function onPickerKey(event) {
  if (event.key === 'Escape') {
    event.preventDefault();
    event.stopPropagation();
    return closeEmojiPicker(true);
  }
  const choices = [...ui.picker.querySelectorAll('.emoji-choice')];
  const at = choices.indexOf(document.activeElement);
  if (at < 0) return;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: EMOJI_COLUMNS, ArrowUp: -EMOJI_COLUMNS }[event.key];
  if (!step) return;
  event.preventDefault();
  choices[Math.min(choices.length - 1, Math.max(0, at + step))].focus();
}

// A small panel next to the button that opened it, inside the window.
function placePopover(popover, anchor) {
  const box = anchor.getBoundingClientRect();
  const width = popover.offsetWidth, height = popover.offsetHeight;
  const margin = 8;
  const left = Math.min(Math.max(margin, box.left), window.innerWidth - width - margin);
  const below = box.bottom + 4;
  const top = below + height <= window.innerHeight - margin ? below : Math.max(margin, box.top - height - 4);
  popover.style.left = `${Math.max(margin, left)}px`;
  popover.style.top = `${top}px`;
}

// ---------------------------------------------------------------- the person card: message someone

function openPersonCard(name, opener) {
  const card = ui.personCard;
  if (!card) return;
  if (!card.hidden && S.personOpener === opener) return closePersonCard(true);
  closeEmojiPicker(false);
  S.personOpener = opener;
  card.querySelector('#person-card-name').textContent = name;
  card.querySelector('.person-card-who').textContent = name;
  card.querySelector('input[name="users"]').value = name;
  card.querySelector('.avatar').replaceWith(avatar(name));
  card.hidden = false;
  placePopover(card, opener);
  opener?.setAttribute('aria-expanded', 'true');
  card.querySelector('button[type="submit"]').focus();
}

function closePersonCard(restoreFocus) {
  const card = ui.personCard;
  if (!card || card.hidden) return;
  card.hidden = true;
  const opener = S.personOpener;
  S.personOpener = null;
  opener?.setAttribute('aria-expanded', 'false');
  if (restoreFocus && opener?.isConnected) opener.focus();
}

// Escape, or a click anywhere else, closes the reaction picker and the person card.
function wirePopovers() {
  document.addEventListener('pointerdown', (event) => {
    if (S.picker && !ui.picker.contains(event.target) && !S.picker.opener.contains(event.target)) closeEmojiPicker(false);
    const card = ui.personCard;
    if (card && !card.hidden && !card.contains(event.target) && !S.personOpener?.contains(event.target)) closePersonCard(false);
  });
  ui.personCard?.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    event.preventDefault();
    event.stopPropagation();
    closePersonCard(true);
  });
  window.addEventListener('resize', () => {
    closeEmojiPicker(false);
    closePersonCard(false);
  });
}

// ---------------------------------------------------------------- threads

function replyCount(n) { return n === 1 ? '1 reply' : `${n} replies`; }

// Under a thread's first message in the room's flow: who replied, how many, and when last.
function renderThreadSummary(node, m) {
  let summary = node.querySelector('.thread-summary');
  const shown = node.dataset.context === 'main' && m.reply_to == null && m.reply_count > 0;
  if (!shown) {
    keepFocusIn(node, summary);
    summary?.remove();
    return;
  }
  if (!summary) {
    summary = button('', 'thread-summary', () => openThread(Number(node.dataset.id), summary));
    summary.title = 'Open the thread';
    const actions = node.querySelector('.message-main > .actions');
    node.querySelector('.message-main').insertBefore(summary, actions);
  }
  const faces = make('span', 'thread-faces');
  for (const name of (m.repliers || []).slice(0, 3)) faces.append(avatar(name, 'avatar-tiny'));
  const parts = [faces, make('span', 'thread-count', replyCount(m.reply_count))];
  if (m.last_reply_at) parts.push(make('span', 'thread-last', `Last reply ${when(m.last_reply_at)}`));
  summary.replaceChildren(...parts);
}

const mainNode = (id) => ui.list.querySelector(`.message[data-id="${Number(id)}"]:not(.outbox)`);
const threadNode = (id) => ui.threadList.querySelector(`.message[data-id="${Number(id)}"]:not(.outbox)`);
const nodesOf = (id) => [mainNode(id), threadNode(id)].filter(Boolean);

// Whether a reply belongs in the open thread's panel as loaded so far (older pages come on request).
function shownInThread(m) {
  const t = S.thread;
  return Boolean(t) && m.reply_to === t.id && (!t.hasMore || t.firstSeq === null || m.seq >= t.firstSeq);
}

const threadAtBottom = () => ui.threadList.scrollHeight - ui.threadList.scrollTop - ui.threadList.clientHeight < 48;

function openThread(id, opener) {
  if (!id || S.stopped) return;
  closeEmojiPicker(false);
  if (S.thread?.id !== id) {
    if (S.thread) mainNode(S.thread.id)?.classList.remove('thread-open');
    mainNode(id)?.classList.add('thread-open');
    S.thread = { id, loaded: false, hasMore: false, firstSeq: null, opener };
    ui.threadPanel.hidden = false;
    ui.layout.classList.add('show-thread');
    renderThread('bottom');
    requestThread();
  } else if (opener) {
    S.thread.opener = opener;
  }
  if (location.hash !== `#thread-${id}`) history.replaceState(null, '', `#thread-${id}`);
  ui.threadInput.focus();
}

function closeThread() {
  if (!S.thread) return;
  const { id, opener } = S.thread;
  S.thread = null;
  mainNode(id)?.classList.remove('thread-open');
  ui.threadPanel.hidden = true;
  ui.layout.classList.remove('show-thread');
  ui.threadList.replaceChildren();
  if (location.hash.startsWith('#thread-')) history.replaceState(null, '', location.pathname + location.search);
  const back = opener?.isConnected ? opener : mainNode(id)?.querySelector('.thread-summary, .reply-button');
  (back || ui.input).focus();
}

function requestThread(before) {
  const t = S.thread;
  if (!t || !S.joined) return;
  const frame = { type: 'thread', room: ROOM, id: t.id, limit: HISTORY_LIMIT, ref: before ? 'thread-older' : 'thread' };
  if (before) frame.before = before;
  t.loading = send(frame);
}

function onThread(f) {
  const t = S.thread;
  if (!t || f.id !== t.id) return;
  const older = f.ref === 'thread-older';
  t.loading = false;
  t.loaded = true;
  if (f.root) storeFetched(f.root);
  const replies = (f.messages || []).filter((m) => m.reply_to === t.id);
  for (const m of replies) storeFetched(m);
  if (!older || replies.length) {
    t.hasMore = Boolean(f.has_more) && replies.length > 0;
    const seqs = replies.map((m) => m.seq);
    if (seqs.length) t.firstSeq = Math.min(...seqs, ...(older && t.firstSeq !== null ? [t.firstSeq] : []));
  } else {
    t.hasMore = false;
  }
  renderThread(older ? 'anchor' : 'bottom');
}

// A message from a thread page: kept like any other, and shown where the room's flow has it.
function storeFetched(m) {
  if (!isNewer(m, S.messages.get(m.id))) return;
  S.messages.set(m.id, m);
  const node = mainNode(m.id);
  if (node) keepingPlace(() => fillMessage(node, m));
}

function threadDividerLabel(root) {
  return root ? replyCount(root.reply_count || 0) : 'Replies';
}

// The whole panel, from what is held: the first message, then its replies in seq order, then
// replies of ours still being sent.
function renderThread(mode) {
  const t = S.thread;
  if (!t) return;
  const fromBottom = ui.threadList.scrollHeight - ui.threadList.scrollTop;
  const root = S.messages.get(t.id);
  const nodes = [];
  if (root) {
    const node = fillMessage(buildMessage(root.author, 'thread'), root);
    node.classList.add('thread-root');
    nodes.push(node);
  } else {
    nodes.push(make('p', 'thread-loading muted', t.loaded ? 'This message is not available.' : 'Loading…'));
  }
  const divider = separator('thread-divider', threadDividerLabel(root));
  nodes.push(divider);
  if (t.hasMore) {
    const older = button('Load earlier replies', 'btn btn-quiet btn-small thread-older', () => {
      older.disabled = true;
      requestThread(t.firstSeq);
    });
    nodes.push(older);
  }
  const replies = [...S.messages.values()].filter(shownInThread).sort((a, b) => a.seq - b.seq);
  for (const m of replies) {
    const node = fillMessage(buildMessage(m.author, 'thread'), m);
    node.classList.add('reply');
    nodes.push(node);
  }
  for (const entry of S.outbox.values()) if (entry.replyTo === t.id && entry.node.classList.contains('outbox')) nodes.push(entry.node);
  const focusWasIn = ui.threadList.contains(document.activeElement);
  ui.threadList.replaceChildren(...nodes);
  groupMessages(ui.threadList);
  if (focusWasIn) ui.threadList.focus({ preventScroll: true });
  ui.threadList.scrollTop = mode === 'anchor' ? ui.threadList.scrollHeight - fromBottom : ui.threadList.scrollHeight;
}

function updateThreadDivider(root) {
  const divider = ui.threadList.querySelector('.thread-divider');
  if (divider) setSeparatorLabel(divider, threadDividerLabel(root));
}

// A reply received in seq order: into the open thread's panel if it is that thread's.
function fileReply(m, node) {
  if (!shownInThread(m)) {
    node?.remove();
    return;
  }
  const existing = threadNode(m.id);
  if (existing && existing !== node) {
    fillMessage(existing, S.messages.get(m.id) || m);
    node?.remove();
    return;
  }
  const placed = node || fillMessage(buildMessage(m.author, 'thread'), m);
  placed.classList.add('reply');
  const follow = threadAtBottom() || placed.dataset.author === ME;
  const later = [...ui.threadList.querySelectorAll('.message.reply:not(.outbox)')].find((n) => n !== placed && Number(n.dataset.seq) > m.seq);
  ui.threadList.insertBefore(placed, later || ui.threadList.querySelector('.message.outbox') || null);
  groupMessages(ui.threadList);
  if (follow) ui.threadList.scrollTop = ui.threadList.scrollHeight;
}

// ---------------------------------------------------------------- keeping every copy current (rev)

// The upsert rule: of two copies of a message, the one with the higher rev wins. A copy made
// from an ack (without the server's HTML) gives way to the stored one of the same rev.
function isNewer(m, held) {
  if (!held || held.partial) return true;
  if (!Number.isInteger(m.rev) || !Number.isInteger(held.rev)) return true;
  return m.rev > held.rev;
}

// A message object from anywhere (a live frame, a catch-up, a thread page): replaces the copy
// held if newer, and every element showing it. Returns true when something changed.
function applyChange(m) {
  if (!m || m.id == null) return false;
  const held = S.messages.get(m.id);
  const ofThread = Boolean(S.thread) && (m.id === S.thread.id || m.reply_to === S.thread.id);
  if ((!held && !ofThread) || !isNewer(m, held)) return false;
  S.messages.set(m.id, m);
  const main = mainNode(m.id);
  if (main) keepingPlace(() => fillMessage(main, m));
  const inPanel = threadNode(m.id);
  if (inPanel) {
    const follow = threadAtBottom();
    fillMessage(inPanel, m);
    if (follow) ui.threadList.scrollTop = ui.threadList.scrollHeight;
  } else if (ofThread && m.reply_to != null) {
    fileReply(m, null);
  } else if (ofThread && !ui.threadList.querySelector('.thread-root')) {
    renderThread('bottom');
  }
  if (S.thread?.id === m.id) updateThreadDivider(m);
  return true;
}

// The client rule for frames that carry a rev: apply, then either move lastRev on by one or,
// past a gap, ask for what was missed (join with rev).
function onRevFrame(f, apply) {
  const rev = Number(f.rev);
  if (!Number.isInteger(rev)) return apply();
  if (S.lastRev === null) {
    S.maxRev = Math.max(S.maxRev, rev);
    return apply();
  }
  apply();
  if (rev === S.lastRev + 1) S.lastRev = rev;
  else if (rev > S.lastRev + 1) noteRev(rev);
}

function noteRev(rev) {
  S.maxRev = Math.max(S.maxRev, rev);
  if (S.lastRev !== null && rev > S.lastRev) catchUp();
}

function onUpdated(f) {
  if (f.message) onRevFrame(f, () => applyChange(f.message));
}

// ---------------------------------------------------------------- the room's flow

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

// Takes a message in seq order (a change to one already held is applied as such); reports gaps.
// Returns true when it was new: a root joins the room's flow, a reply its thread.
function acceptLive(m) {
  if (m.seq <= S.lastSeq) {
    applyChange(m);
    return false;
  }
  if (m.seq > S.lastSeq + 1) return noteSeq(m.seq), false; // gap: catch up, never render out of order
  const entry = findOutboxEntry(m);
  const held = S.messages.get(m.id);
  const current = isNewer(m, held) ? m : held;
  S.messages.set(m.id, current);
  if (current.reply_to != null) {
    S.bySeq.set(m.seq, null);
    fileReply(current, entry ? adopt(entry, current) : null);
  } else {
    const node = entry ? adopt(entry, current) : fillMessage(buildMessage(current.author), current);
    insertLive(node);
    S.bySeq.set(m.seq, node);
  }
  S.lastSeq = m.seq;
  if (S.firstSeq === null) S.firstSeq = m.seq;
  if (S.typers.has(m.author)) stopTyping(m.author);
  return true;
}

// ---------------------------------------------------------------- a message's buttons, and the keyboard

function iconTool(className, label, path, onClick) {
  const tool = button('', `tool tool-icon ${className}`, onClick);
  tool.append(icon(path));
  tool.setAttribute('aria-label', label);
  tool.title = label;
  return tool;
}

function textTool(text, className, label, onClick) {
  const tool = button(text, `tool ${className}`, onClick);
  tool.setAttribute('aria-label', label);
  return tool;
}

// React and Reply on every stored message (Reply in the room's flow only), Edit and Delete on one's own.
function renderTools(node) {
  let tools = node.querySelector('.message-tools');
  const usable = Boolean(node.dataset.id) && !node.classList.contains('deleted') && !node.classList.contains('outbox');
  if (!usable) {
    keepFocusIn(node, tools);
    tools?.remove();
    return;
  }
  if (!tools) {
    tools = make('span', 'message-tools');
    tools.append(
      iconTool('react-button', 'Add reaction', ICONS.react, (event) => openEmojiPicker(node, event.currentTarget)),
      iconTool('reply-button', 'Reply in thread', ICONS.reply, (event) => openThread(Number(node.dataset.id), event.currentTarget)),
      textTool('Edit', 'edit-button', 'Edit message', () => openEditor(node)),
      textTool('Delete', 'delete-button', 'Delete message', () => confirmDelete(node)),
      iconTool('link-button', COPY_LINK_LABEL, LINK_ICON, () => copyMessageLink(ROOM, node, toast)),
    );
    tools.querySelector('.react-button').setAttribute('aria-haspopup', 'dialog');
    node.querySelector('.meta').append(tools);
  }
  const own = node.dataset.author === ME;
  tools.querySelector('.reply-button').hidden = node.dataset.context !== 'main' || Boolean(node.dataset.replyTo);
  tools.querySelector('.edit-button').hidden = !own;
  tools.querySelector('.delete-button').hidden = !own && !MANAGER;
}

// A list of messages is one Tab stop (the list): the up and down arrows go from message to
// message, left and right through the focused message's links and buttons (flow.js), so 50
// messages are not 200 Tab stops between the sidebar and the composer. The message last focused
// is the current one: it shows its tools, also on a touch screen.
function applyRoving(node) {
  for (const control of node.querySelectorAll('a[href], button')) {
    if (!control.closest('.editor')) control.tabIndex = -1;
  }
  node.classList.toggle('current', node === S.current);
}

function setCurrent(node) {
  if (S.current === node) return;
  const previous = S.current;
  S.current = node;
  if (previous?.isConnected) applyRoving(previous);
  if (node) applyRoving(node);
}

// Tabbing into a list brings the focus back to its current message when that is in view.
function onListFocus(event) {
  const list = event.currentTarget;
  if (event.target === list) {
    const back = S.current;
    const cameFromOutside = !list.contains(event.relatedTarget);
    if (cameFromOutside && back?.isConnected && list.contains(back) && inView(list, back)) back.focus({ preventScroll: true });
    return;
  }
  const node = event.target.closest('.message');
  if (node && !node.classList.contains('outbox')) setCurrent(node);
}

function inView(list, node) {
  const box = node.getBoundingClientRect(), view = list.getBoundingClientRect();
  return box.bottom > view.top && box.top < view.bottom;
}

function onListKey(event) {
  const list = event.currentTarget;
  if (event.key === 'Tab' && event.shiftKey && event.target !== list) {
    // Shift+Tab from inside leaves the list rather than stopping on the list itself.
    list.tabIndex = -1;
    setTimeout(() => { list.tabIndex = 0; });
    return;
  }
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  const target = event.target;
  if (target !== list && target.matches('textarea, input')) return; // the editor keeps its arrows
  const from = target === list ? null : target.closest('.message');
  if (from && moveWithinMessage(event, from)) return;
  const messages = [...list.querySelectorAll('.message')];
  if (!messages.length) return;
  const at = messages.indexOf(from);
  let next;
  if (event.key === 'ArrowDown') next = at < 0 ? firstVisibleIn(list) : messages[at + 1];
  else if (event.key === 'ArrowUp') next = at < 0 ? lastVisibleIn(list) : messages[at - 1];
  else if ((event.key === 'Home' || event.key === 'End') && from === target && at >= 0) next = event.key === 'Home' ? messages[0] : messages.at(-1);
  else return;
  event.preventDefault();
  if (!next) {
    if (event.key === 'ArrowUp' && list === ui.list) loadOlder();
    return;
  }
  next.focus({ preventScroll: true });
  next.scrollIntoView({ block: 'nearest' });
}

function firstVisibleIn(list) {
  const top = list.getBoundingClientRect().top;
  return [...list.querySelectorAll('.message')].find((node) => node.getBoundingClientRect().bottom > top) || null;
}

function lastVisibleIn(list) {
  const bottom = list.getBoundingClientRect().bottom;
  return [...list.querySelectorAll('.message')].reverse().find((node) => node.getBoundingClientRect().top < bottom) || null;
}

// ---------------------------------------------------------------- editing and deleting your own messages

function openEditor(node) {
  const open = node.querySelector('.editor');
  if (open) return open.querySelector('textarea').focus();
  const id = `editor-${node.dataset.context}-${node.dataset.id}`;
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
  const list = node.closest('.messages') || ui.list;
  area.addEventListener('input', () => {
    const follow = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
    sizeToContent(area);
    if (follow) list.scrollTop = list.scrollHeight;
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

const editorOpeners = new WeakMap(); // message element -> the composer its editor was opened from

function cancelEdit(node) {
  if (!closeEditor(node)) return;
  const back = editorOpeners.get(node);
  editorOpeners.delete(node);
  (back?.isConnected && !back.disabled ? back : node.querySelector('.edit-button'))?.focus();
}

// Up in an empty composer edits your newest message there, as in Slack; the editor's Escape (or
// saving) comes back to the composer.
function editLastOwn(c) {
  const node = lastOwnMessage(c === composers.main ? ui.list : ui.threadList, ME);
  if (!node) return false;
  editorOpeners.set(node, c.input);
  openEditor(node);
  return true;
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
  const mine = S.edits.get(f.ref);
  S.edits.delete(f.ref);
  if (!f.message) return;
  onRevFrame(f, () => applyChange(f.message));
  if (mine?.isConnected) cancelEdit(mine);
}

function confirmDelete(node) {
  S.deleteTarget = node;
  const files = (S.messages.get(Number(node.dataset.id))?.attachments || []).map((a) => a.name).join(', ');
  ui.dialogPreview.textContent = rawBodies.get(node) || files; // a message of files alone: their names
  ui.dialog.returnValue = '';
  ui.dialog.showModal();
}

// Runs however the dialog closed: its buttons (a method="dialog" form) or Escape.
// The close event is queued, so it can arrive after the dialog was opened again (Escape,
// then Enter on the Delete button at once): that stale event must not consume the new target.
function onDeleteDialogClosed() {
  if (ui.dialog.open) return;
  const node = S.deleteTarget;
  S.deleteTarget = null;
  if (!node) return;
  if (ui.dialog.returnValue !== 'delete') return node.querySelector('.delete-button')?.focus();
  (node.closest('.messages') || ui.list).focus({ preventScroll: true }); // the message's buttons are about to go
  const ref = `delete-${++S.refs}`;
  if (!S.joined || !send({ type: 'delete', room: ROOM, id: Number(node.dataset.id), ref })) {
    return toast('Not connected: the message was not deleted. Try again in a moment.');
  }
  S.deletes.set(ref, node);
  node.classList.add('deleting');
}

function onDeleted(f) {
  S.deletes.delete(f.ref);
  const nodes = nodesOf(f.id);
  // Deleted elsewhere (another tab, a moderator) while this page was editing or asking about it.
  const focused = nodes.find((node) => node.contains(document.activeElement) || S.deleteTarget === node);
  if (nodes.includes(S.deleteTarget)) {
    S.deleteTarget = null;
    ui.dialog.close();
  }
  const held = S.messages.get(f.id);
  const tombstone = f.message && typeof f.message === 'object'
    ? f.message
    : { ...(held || { id: f.id, seq: f.seq, author: '' }), rev: f.rev, deleted: true, body: '', html: '', reactions: {}, attachments: [] };
  onRevFrame(f, () => applyChange(tombstone));
  if (focused) (focused.closest('.messages') || ui.list).focus({ preventScroll: true });
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
  groupMessages(ui.list);
}

// Before the first message someone else wrote after the read marker the page loaded with.
function placeUnreadDivider() {
  S.unreadPlaced = true;
  if (S.lastRead === null) return null;
  const messages = [...S.messages.values()].sort((a, b) => a.seq - b.seq);
  const first = messages.find((m) => m.seq > S.lastRead && m.author !== ME && !m.deleted && m.reply_to == null);
  const node = first && S.bySeq.get(first.seq);
  if (!node) return null;
  const divider = separator('unread-divider', 'New messages');
  node.before(divider);
  refreshDaySeparators();
  return divider;
}

// The first unread message may be older than the first page: older pages come first, as many
// messages as reach it (up to UNREAD_REACH). Returns true while such a page is on its way.
function seekUnread() {
  if (S.lastRead === null || !S.hasMore || S.firstSeq === null || S.firstSeq <= S.lastRead + 1) return false;
  if (S.bySeq.size >= UNREAD_REACH || S.historyBusy) return false;
  const limit = Math.min(HISTORY_MAX, S.firstSeq - S.lastRead - 1);
  S.historyBusy = send({ type: 'history', room: ROOM, before: S.firstSeq, limit, ref: 'unread' });
  return S.historyBusy;
}

// After the first join: the "New messages" line above the first unread message, in view.
function showUnread() {
  if (seekUnread()) return scrollToBottom();
  const divider = placeUnreadDivider();
  if (divider) revealUnread(divider);
  else afterAppend(true);
  fillViewport();
}

// ---------------------------------------------------------------- scrolling and history

const isAtBottom = () => ui.list.scrollHeight - ui.list.scrollTop - ui.list.clientHeight < 48;

function scrollListTo(top) {
  ui.list.scrollTop = top;
  S.lastScrollTop = ui.list.scrollTop;
}

function scrollToBottom() {
  scrollListTo(ui.list.scrollHeight);
  S.newBelow.clear();
  ui.newButton.hidden = true;
}

// `fresh`: the messages just added to the flow. Those by others that land below the view make
// the "New messages" button show, until the reader has scrolled to them.
function afterAppend(follow, fresh = []) {
  if (follow) scrollToBottom();
  else noteNewBelow(fresh.map((m) => S.bySeq.get(m.seq)));
  scheduleRead(READ_DEBOUNCE);
}

function noteNewBelow(nodes) {
  for (const node of nodes) if (node && node.dataset.author !== ME && !node.classList.contains('deleted')) S.newBelow.add(node);
  updateNewButton();
}

function updateNewButton() {
  const bottom = ui.list.getBoundingClientRect().bottom;
  for (const node of S.newBelow) {
    const seen = !node.isConnected || node.classList.contains('deleted') || node.getBoundingClientRect().top < bottom - 8;
    if (seen) S.newBelow.delete(node);
  }
  ui.newButton.hidden = S.newBelow.size === 0;
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
  let node = divider.nextElementSibling;
  const unread = [];
  for (; node; node = node.nextElementSibling) if (node.matches('.message:not(.outbox)')) unread.push(node);
  noteNewBelow(unread);
  scheduleRead(READ_DEBOUNCE);
}

function onScroll() {
  const top = ui.list.scrollTop;
  // Only the reader moving up asks for older messages, not the page placing the view itself.
  if (top < 80 && top < S.lastScrollTop) loadOlder();
  S.lastScrollTop = top;
  if (S.newBelow.size) updateNewButton();
  if (isAtBottom()) scheduleRead(READ_DEBOUNCE);
}

const marker = make('div', 'history-marker');

// A page opened from a link to a message (permalink.js) shows that message and the history around it.
const links = messageLinks({
  S, ui, room: ROOM, marker, send, isNewer, fillMessage, buildMessage, keepingPlace, updateMarker,
  refreshDaySeparators, scrollToBottom, toast,
});

function updateMarker() {
  if (!S.baselined || S.historyBusy) marker.replaceChildren('Loading…');
  else if (!S.hasMore) marker.replaceChildren(DIRECT ? 'Beginning of the conversation' : 'Beginning of the room');
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
  if (links.onHistory(f)) return;
  S.historyBusy = false;
  const older = (f.messages || [])
    .filter((m) => (S.firstSeq === null || m.seq < S.firstSeq) && !S.bySeq.has(m.seq))
    .sort((a, b) => a.seq - b.seq);
  keepingPlace(() => {
    const fragment = document.createDocumentFragment();
    for (const m of older) {
      const held = S.messages.get(m.id);
      const current = isNewer(m, held) ? m : held;
      S.messages.set(m.id, current);
      if (current.reply_to != null) { // its thread's, not the flow's
        S.bySeq.set(m.seq, null);
        continue;
      }
      const node = fillMessage(buildMessage(current.author), current);
      S.bySeq.set(m.seq, node);
      fragment.append(node);
    }
    marker.after(fragment);
    if (older.length) S.firstSeq = older[0].seq;
    S.hasMore = Boolean(f.has_more) && older.length > 0 && S.firstSeq > 1;
    updateMarker();
    refreshDaySeparators();
  });
  if (f.ref === 'unread') showUnread();
  else fillViewport();
}

// ---------------------------------------------------------------- joining and catching up

// After the first join: `since` (the messages after the last seq held) and `rev` (every change
// after the last rev applied), so a catch-up brings edits, deletions, reactions and thread
// summaries along with the new messages.
function sendJoin() {
  const frame = { type: 'join', room: ROOM, ref: `join-${++S.joinCount}` };
  if (S.baselined) {
    frame.since = S.lastSeq;
    if (S.lastRev !== null) frame.rev = S.lastRev;
  }
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
  const revBefore = S.lastRev;
  const first = !S.baselined;
  const follow = first || isAtBottom();
  const fresh = !S.joined; // first `joined` on this socket: resend what is still pending
  Object.assign(S, { joined: true, joining: false, attempt: 0, authRetried: false });
  showInfo(f.info);
  renderPresence(
    f.presence || [], f.online ?? (f.presence || []).length, f.presence_complete !== false,
    typeof f.presence_version === 'number' ? f.presence_version : null,
  );
  const messages = (f.messages || []).slice().sort((a, b) => a.seq - b.seq);
  if (first) {
    S.baselined = true;
    if (messages.length) S.lastSeq = messages[0].seq - 1;
    S.hasMore = messages.length > 0 && messages[0].seq > 1;
  }
  const added = [];
  for (const m of messages) {
    if (!acceptLive(m)) continue;
    if (m.reply_to == null) added.push(m);
    if (!first) noticeWhileHidden(m);
  }
  if (Number.isInteger(f.rev)) {
    // All of it: the room's rev. Part of it (ordered by rev): the last rev received, to go on from.
    const received = messages.map((m) => m.rev).filter(Number.isInteger);
    const reached = f.complete ? f.rev : Math.max(revBefore ?? 0, ...received);
    S.lastRev = Math.max(reached, S.lastRev ?? 0);
  }
  S.downSince = null;
  hideOutage();
  setStatus('live', 'Live');
  updateMarker();
  if (fresh) flushOutbox();
  if (fresh && S.thread && !S.thread.loaded) requestThread();
  if (first) openThreadFromHash();
  const behind = S.maxSeen > S.lastSeq || (S.lastRev !== null && S.maxRev > S.lastRev);
  if (!f.complete) catchUp();
  else if (behind) {
    // Progress: ask again now. None: the server may still be committing; ask again shortly.
    if (S.lastSeq > before || S.lastRev !== revBefore) catchUp();
    else S.timers.catchUp = setTimeout(catchUp, 2000);
  }
  if (first && links.start()) { // the linked message takes the view, and the read marker stays
    S.unreadPlaced = true;
    return;
  }
  if (first || !S.unreadPlaced) showUnread(); // (again, if the socket went while looking for it)
  else if (added.length) afterAppend(follow, added);
}

function openThreadFromHash() {
  const match = /^#thread-(\d+)$/.exec(location.hash);
  if (match) openThread(Number(match[1]));
}

function showInfo(info) {
  if (!info) return;
  if (info.name) {
    ui.name.textContent = info.name;
    S.baseTitle = `${info.name} · Channels Chat`;
    updateTitle();
  }
  ui.topic.textContent = info.kind === 'direct' ? '' : info.topic || '';
}

function onMessage(f) {
  const m = f.message;
  if (!m) return;
  onRevFrame(f, () => {
    const follow = isAtBottom();
    if (!acceptLive(m)) return;
    if (m.reply_to == null) afterAppend(follow, [m]);
    else scheduleRead(READ_DEBOUNCE);
    noticeWhileHidden(m);
  });
}

function onRoomClosed(f) {
  const reasons = {
    archived: 'This room was archived.',
    deleted: 'This room was deleted.',
    removed: 'You were removed from this room.',
    banned: 'You were banned from this room.',
    left: 'You left this room.',
  };
  showBanner(ui.closed, reasons[f.reason] || 'This room was closed.');
  closeThread();
  stop();
}

function roomUnavailable(f) {
  const titles = {
    [ERROR.NOT_FOUND]: 'This room does not exist or has been archived.',
    [ERROR.FORBIDDEN]: DIRECT ? 'You are not in this conversation.' : 'You do not have access to this room.',
  };
  ui.roomError.replaceChildren(make('p', 'room-error-title', titles[f.code]), make('p', 'muted', f.detail || ''));
  const back = make('a', 'btn btn-primary', 'Back to rooms');
  back.href = document.querySelector('.back-link')?.href || '/';
  ui.roomError.append(back);
  ui.roomError.hidden = false;
  for (const node of [ui.wrap, ui.form, ui.typing]) node.hidden = true;
  closeThread();
  stop();
}

// ---------------------------------------------------------------- direct messages in the sidebar

function directItem(slug) {
  return ui.directs?.querySelector(`li[data-slug="${CSS.escape(slug)}"]`) || null;
}

function addDirectItem(slug, info) {
  const name = info?.name || slug;
  const item = make('li');
  item.dataset.slug = slug;
  item.dataset.unread = '0';
  const anchor = make('a', 'sidebar-room');
  anchor.href = `/rooms/${encodeURIComponent(slug)}/`;
  anchor.append(avatar(name, 'avatar-small'), make('span', 'sidebar-room-name', name));
  item.append(anchor);
  ui.directs.prepend(item);
  return item;
}

// A new message in one of the user's direct conversations, whichever room this page shows: the
// conversation goes to the top of the list (added if new); unread.js counts it and notifies.
function onDirectMessage(f) {
  const m = f.message;
  if (!m || typeof f.room !== 'string' || f.room === ROOM || !ui.directs) return;
  let item = directItem(f.room);
  if (!item) item = addDirectItem(f.room, f.info);
  else if (ui.directs.firstElementChild !== item && !item.contains(document.activeElement)) ui.directs.prepend(item);
}

// ---------------------------------------------------------------- sending

// The files waiting to go with each composer's next message (files.js): dropped on the room for
// the room's composer, on the thread panel for the thread's.
for (const [c, drop] of [[composers.main, ui.drop || ui.layout], [composers.thread, ui.threadPanel]]) {
  if (c.form.querySelector('.attachment-chips')) {
    c.attach = wireAttachments({ room: ROOM, form: c.form, input: c.input, drop, maxFiles: MAX_FILES });
  }
}

function transmit(entry) {
  entry.status = 'pending';
  entry.node.classList.remove('failed');
  entry.node.classList.add('pending');
  entry.node.querySelector('.actions')?.remove();
  setNote(entry.node, 'sending…');
  const frame = { type: 'send', room: ROOM, body: entry.body, client_id: entry.cid, ref: entry.cid };
  if (entry.replyTo != null) frame.reply_to = entry.replyTo;
  if (entry.attachments.length) frame.attachments = entry.attachments.map((a) => a.id); // the same on every resend
  if (S.joined) send(frame);
}

const outboxIds = (status) => [...S.outbox.values()].filter((e) => e.status === status).map((e) => e.cid);

function flushOutbox() {
  for (const entry of S.outbox.values()) if (entry.status === 'pending') transmit(entry);
}

// Shown at once as typed (pending), in the room's flow or, for a reply, in its thread's panel.
// `attachments`: the finished uploads going with it (their wire form, shown at once).
function queueMessage(body, replyTo = null, attachments = []) {
  const entry = {
    cid: newClientId(), body, replyTo, attachments, createdAt: new Date().toISOString(), status: 'pending', retries: 0, seq: null,
  };
  const node = buildMessage(ME, replyTo == null ? 'main' : 'thread');
  node.classList.add('own', 'outbox', 'pending');
  node.dataset.clientId = entry.cid;
  node.dataset.author = ME;
  renderText(node.querySelector('.body'), body);
  renderAttachments(node, { attachments });
  setTime(node, entry.createdAt);
  entry.node = node;
  S.outbox.set(entry.cid, entry);
  if (replyTo == null) {
    ui.list.append(node);
    refreshDaySeparators();
    scrollToBottom();
  } else {
    ui.threadList.append(node);
    ui.threadList.scrollTop = ui.threadList.scrollHeight;
  }
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
    // Placed now, as typed; the stored copy (with its HTML) replaces it when its `message` comes.
    const follow = isAtBottom();
    acceptLive({
      id: f.id, seq: f.seq, rev: f.rev, room: ROOM, author: ME, body: entry.body, html: '', created_at: entry.createdAt,
      edited_at: null, client_id: entry.cid, reply_to: entry.replyTo, reply_count: 0, repliers: [], last_reply_at: null,
      reactions: {}, attachments: entry.attachments, partial: true,
    });
    if (entry.replyTo == null) afterAppend(follow);
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
    button('Discard', 'btn btn-small btn-quiet discard', () => {
      S.outbox.delete(entry.cid);
      const list = entry.node.parentElement;
      entry.node.remove();
      if (list) groupMessages(list);
    }),
  );
  entry.node.querySelector('.actions')?.remove();
  entry.node.querySelector('.message-main').append(actions);
}

// Drop leading blank lines and trailing whitespace; keep indentation inside the text.
const cleanBody = (text) => text.replace(/^\s*\n/, '').replace(/\s+$/, '');

function submitComposer(c = composers.main) {
  if (c.input.disabled) return;
  const body = cleanBody(c.input.value);
  const files = c.attach ? c.attach.ready() : [];
  if (c.attach?.busy()) return c.attach.warnBusy();
  if (!body.trim() && !files.length) return; // files may go without text
  if (charCount(body) > MAX_BODY) {
    updateCounter(c);
    c.counter.classList.add('shake');
    return;
  }
  const replyTo = c === composers.thread ? S.thread?.id : null;
  if (c === composers.thread && !replyTo) return;
  c.input.value = '';
  autosize(c);
  updateCounter(c);
  queueMessage(body.trim() ? body : '', replyTo, files);
  if (files.length) c.attach.clearSent();
}

function updateCounter(c = composers.main) {
  const count = charCount(c.input.value);
  const near = count > MAX_BODY * 0.9;
  c.counter.textContent = near ? `${count} / ${MAX_BODY}` : '';
  c.counter.classList.toggle('over', count > MAX_BODY);
  c.counter.classList.remove('shake');
  c.send.disabled = c.input.disabled || count > MAX_BODY;
}

function autosize(c = composers.main) {
  c.input.style.height = 'auto';
  c.input.style.height = `${Math.min(c.input.scrollHeight, 200)}px`;
}

function maybeSendTyping(c = composers.main) {
  const now = Date.now();
  if (!S.joined || !c.input.value.trim() || now - S.lastTypingSent < TYPING_EVERY) return;
  if (send({ type: 'typing', room: ROOM, ref: 'typing' })) S.lastTypingSent = now;
}

// ---------------------------------------------------------------- presence, typing, read marker

// Who is online: every name in a small room; in a large one (the server caps `joined.presence` and
// then sends changes), the names loaded so far and those seen joining, with the server's count.
// `version` is the last whole list's: lists sent by different workers can arrive out of order, and
// one read before the list held is dropped.
const P = { names: new Set(), online: 0, complete: true, after: null, version: null };

function renderPresence(users, online = users.length, complete = true, version = null) {
  Object.assign(P, {
    names: new Set(users), online, complete, after: users.length ? users[users.length - 1] : null, version,
  });
  drawPresence();
}

// `presence`: the whole list (`users`), or the changes with the count.
function onPresence(f) {
  if (Array.isArray(f.users)) {
    const version = typeof f.version === 'number' ? f.version : null;
    if (version !== null && P.version !== null && version < P.version) return;
    renderPresence(f.users, f.users.length, true, version ?? P.version);
    return;
  }
  for (const name of f.joined || []) P.names.add(name);
  for (const name of f.left || []) P.names.delete(name);
  if (typeof f.online === 'number') P.online = f.online;
  drawPresence();
}

// A page of `online`: the names after the last one loaded.
function onOnline(f) {
  for (const name of f.users || []) P.names.add(name);
  if (f.users && f.users.length) P.after = f.users[f.users.length - 1];
  if (typeof f.online === 'number') P.online = f.online;
  P.complete = !f.has_more;
  drawPresence();
}

function loadMorePresence() {
  send({ type: 'online', room: ROOM, after: P.after ?? undefined, limit: 500, ref: 'online' });
}

function drawPresence() {
  const names = [...P.names].sort((a, b) => a.localeCompare(b));
  ui.presence.replaceChildren(...names.map((name) => {
    const item = make('li', 'presence-user');
    item.dataset.username = name;
    item.append(avatar(name), make('span', 'presence-name', name));
    if (name === ME) item.append(make('span', 'muted', ' (you)'));
    return item;
  }));
  const online = Math.max(P.online, names.length);
  for (const count of ui.presenceCounts) if (count) count.textContent = String(online);
  if (ui.presenceOnline) ui.presenceOnline.textContent = String(online);
  if (ui.presenceMore) ui.presenceMore.hidden = P.complete;
}

// Without a socket the page cannot know who is online (itself included): it claims nobody until
// the next `joined` brings the list again.
function presenceUnknown() {
  Object.assign(P, { names: new Set(), online: 0, complete: true, after: null, version: null });
  ui.presence.replaceChildren(make('li', 'presence-unknown muted', 'Not connected'));
  for (const count of ui.presenceCounts) if (count) count.textContent = '–';
  if (ui.presenceOnline) ui.presenceOnline.textContent = '–';
  if (ui.presenceMore) ui.presenceMore.hidden = true;
}

// Whom @ offers first: the people online here, then the authors of the newest messages held.
function mentionCandidates() {
  const online = [...ui.presence.querySelectorAll('.presence-user')].map((item) => item.dataset.username);
  const authors = [...S.messages.values()].sort((a, b) => b.seq - a.seq).map((m) => m.author);
  return [...online, ...authors].filter((name) => name && name !== DELETED_AUTHOR);
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
  if (document.visibilityState !== 'visible' || !S.joined || !isAtBottom() || links.holdsRead()) return;
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
    ? 'Desktop notifications are on: new messages here while this tab is in the background, and direct messages. Click to turn them off.'
    : 'Get a desktop notification for new messages here while this tab is in the background, and for direct messages.';
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

// The title counts this room's messages that arrived while the tab was hidden, and the mentions
// and direct messages waiting elsewhere (unread.js, which also shows the desktop notifications).
function updateTitle() {
  const count = S.unseen + mentionTotal();
  const title = count ? `(${count}) ${S.baseTitle}` : S.baseTitle;
  if (document.title !== title) document.title = title;
}

// A reply counts when it is in the open thread or answers one of ours (the room's unread count
// leaves replies out, as the thread's summary shows them).
function threadConcernsMe(m) {
  return S.thread?.id === m.reply_to || S.messages.get(m.reply_to)?.author === ME;
}

function noticeWhileHidden(m) {
  if (!document.hidden || m.author === ME || m.deleted) return;
  if (m.reply_to != null && !threadConcernsMe(m)) return;
  S.unseen += 1;
  updateTitle();
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
  if (links.onError(f)) return;
  if (ref.startsWith('join-') || (!S.baselined && f.room === ROOM)) {
    S.joining = false;
    if (f.code === ERROR.NOT_FOUND || f.code === ERROR.FORBIDDEN) return roomUnavailable(f);
    S.timers.catchUp = setTimeout(catchUp, 2000);
    if (f.code === ERROR.RATE_LIMITED) return;
  }
  if (ref === 'history' || ref === 'unread') {
    S.historyBusy = false;
    updateMarker();
  }
  if (ref === 'unread' && !S.unreadPlaced) {
    const divider = placeUnreadDivider(); // with what is held
    if (divider) revealUnread(divider);
  }
  if ((ref === 'thread' || ref === 'thread-older') && S.thread) {
    S.thread.loading = false;
    if (ref === 'thread') {
      S.thread.loaded = true;
      if (!S.messages.has(S.thread.id)) renderThread('bottom'); // "not available"
    } else {
      ui.threadList.querySelector('.thread-older')?.removeAttribute('disabled');
    }
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
  if (S.downSince !== null && Date.now() - S.downSince >= OUTAGE_NOTICE) showOutage(ui.wrap, null, retryNow);
  const ws = new WebSocket(wsUrl());
  S.ws = ws;
  clearTimeout(S.timers.open);
  S.timers.open = setTimeout(() => { if (ws === S.ws && ws.readyState === WebSocket.CONNECTING) ws.close(); }, OPEN_TIMEOUT);
  ws.addEventListener('open', () => { clearTimeout(S.timers.open); if (ws === S.ws) onOpen(); });
  ws.addEventListener('message', (event) => { if (ws === S.ws) onFrame(event.data); });
  ws.addEventListener('close', (event) => onClose(ws, event.code));
}

function onOpen() { sendJoin(); startPing(); unreadConnected(); }

const handlers = {
  joined: onJoined, message: onMessage, ack: onAck, history: onHistory, typing: onTyping,
  presence: onPresence, online: onOnline, message_deleted: onDeleted, message_edited: onEdited,
  message_updated: onUpdated, thread: onThread, room_closed: onRoomClosed, pong: onPong, error: onError,
  room_updated: onRoomUpdated, members: onMembers,
};

function onFrame(data) {
  let frame = null;
  try { frame = JSON.parse(data); } catch { /* not ours to fix */ }
  if (!frame || typeof frame !== 'object') return;
  if (handleUnreadFrame(frame)) return; // the sidebar's counts, from every room
  if (handleSearchFrame(frame)) return; // the search box's answers (search.js)
  if (frame.type === 'direct_message') return onDirectMessage(frame); // any conversation's, on any socket
  if (frame.type === 'room_invited') return onRoomInvited(frame); // any room's, on any socket
  if (frame.room != null && frame.room !== ROOM) return; // only one room on this page
  handlers[frame.type]?.(frame);
}

function onClose(ws, code) {
  if (ws !== S.ws) return;
  clearTimeout(S.timers.open);
  Object.assign(S, { ws: null, joined: false, joining: false, historyBusy: false });
  S.downSince ??= Date.now();
  stopPing();
  updateMarker();
  presenceUnknown();
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
  const delay = reconnectDelay(S.attempt, Date.now() - S.downSince);
  S.attempt += 1;
  const due = Date.now() + delay;
  const tick = () => {
    if (Date.now() - S.downSince >= OUTAGE_NOTICE) showOutage(ui.wrap, due, retryNow);
    if (!navigator.onLine) return setStatus('offline', 'Offline');
    const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    setStatus('reconnecting', `Reconnecting in ${seconds}s…`);
  };
  tick();
  S.timers.countdown = setInterval(tick, 1000);
  S.timers.reconnect = setTimeout(connect, delay);
}

// "Retry now", the browser back online, the tab shown again: no reason to wait out the delay.
function retryNow() {
  if (S.timers.reconnect) connect();
}

function stop() {
  S.stopped = true;
  hideOutage();
  clearReconnect();
  stopPing();
  clearTimeout(S.timers.catchUp);
  setComposerEnabled(false);
  const ws = S.ws;
  Object.assign(S, { ws: null, joined: false, joining: false });
  ws?.close(CLOSE.NORMAL);
  setStatus('offline', 'Offline');
  presenceUnknown();
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
  const rev = Number(f.revs?.[ROOM]);
  if (S.lastRev !== null && rev > S.lastRev) noteRev(rev);
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

function wireComposer(c) {
  c.form.addEventListener('submit', (event) => { event.preventDefault(); submitComposer(c); });
  c.input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitComposer(c);
    } else if (event.key === 'ArrowUp' && !c.input.value && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey) {
      if (editLastOwn(c)) event.preventDefault();
    }
  });
  c.input.addEventListener('input', () => { autosize(c); updateCounter(c); maybeSendTyping(c); });
  updateCounter(c);
}

function wireThreadPanel() {
  $('thread-close').addEventListener('click', closeThread);
  $('thread-back').addEventListener('click', closeThread);
  ui.threadPanel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !event.defaultPrevented) {
      event.preventDefault();
      closeThread();
    }
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#thread-')) openThreadFromHash();
    else if (S.thread) closeThread();
  });
}

function wire() {
  ui.list.prepend(marker);
  updateMarker();
  ui.list.addEventListener('scroll', onScroll, { passive: true });
  // The list gets shorter when the composer grows (files waiting, a long text): a reader at the
  // bottom stays at the bottom.
  let listHeight = ui.list.clientHeight;
  new ResizeObserver(() => {
    const before = listHeight;
    listHeight = ui.list.clientHeight;
    if (listHeight < before && ui.list.scrollHeight - ui.list.scrollTop - before < 48) scrollListTo(ui.list.scrollHeight);
  }).observe(ui.list);
  for (const list of [ui.list, ui.threadList]) {
    list.addEventListener('focusin', onListFocus);
    list.addEventListener('keydown', onListKey);
    // A tap makes a message current even where the browser gives it no focus (Safari on iOS).
    list.addEventListener('click', (event) => {
      const node = event.target.closest('.message');
      if (node && !node.classList.contains('outbox')) setCurrent(node);
    });
  }
  ui.dialog.addEventListener('close', onDeleteDialogClosed);
  wireNotifications();
  wirePopovers();
  wireThreadPanel();
  ui.newButton.addEventListener('click', () => { scrollToBottom(); scheduleRead(0); });
  wireComposer(composers.main);
  wireComposer(composers.thread);
  connectSearch({ send, connected: () => S.joined });
  wireManage({ room: ROOM, me: ME, canManage: MANAGER, onInfo: showInfo });
  for (const c of Object.values(composers)) wireMentions({ input: c.input, form: c.form, local: mentionCandidates, me: ME });
  wirePresencePanel({
    layout: ui.layout, toggle: ui.presenceToggle, panel: $('presence-panel'),
    header: document.querySelector('.room-header'), composers: [ui.form, ui.threadForm],
  });
  ui.presenceMore?.addEventListener('click', loadMorePresence);
  document.addEventListener('visibilitychange', onVisibilityChange);
  window.addEventListener('focus', () => scheduleRead(0));
  window.addEventListener('online', retryNow);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) retryNow(); });
  window.chat = Object.freeze({
    state: () => ({
      lastSeq: S.lastSeq,
      pending: outboxIds('pending'),
      failed: outboxIds('failed'),
      connected: S.joined && S.ws !== null && S.ws.readyState === WebSocket.OPEN,
      lastRev: S.lastRev,
      thread: S.thread?.id ?? null,
    }),
    socket: () => S.ws,
    openDirectPicker,
  });
  paintAvatars();
  startUnread({ me: ME, current: ROOM, send, onTitle: updateTitle });
  connect();
  focusComposerOnOpen();
}

// With a keyboard and a mouse, the room opens ready to type; on a touch screen focusing the
// composer would open the on-screen keyboard over the room, so it does not.
function focusComposerOnOpen() {
  $('skip-to-composer')?.addEventListener('click', (event) => {
    event.preventDefault();
    ui.input.focus();
  });
  const fine = window.matchMedia('(hover: hover) and (pointer: fine)').matches;
  if (fine && !location.hash.startsWith('#thread-') && document.activeElement === document.body) ui.input.focus({ preventScroll: true });
}

wire();
