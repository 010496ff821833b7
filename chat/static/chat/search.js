// The search box in the top bar of every signed-in page: messages of every room the user may read
// (docs/api.md GET /api/search/, docs/protocol.md `search`). On the room page it asks over the
// page's socket (chat.js hands it over with connectSearch); elsewhere, or while that socket is
// down, over HTTP. `/` or Ctrl+K (Cmd+K) focuses it; Enter searches; Escape closes the results.
// `in:#room` and `from:@user` in the text narrow it to a room or an author.
//
// Results are built from text nodes: every match of the text searched for, in any letter case and
// any script, is wrapped in <mark>; nothing a user wrote is ever set as HTML.

const TEXT = Object.freeze({
  searching: 'Searching…',
  none: 'No messages match',
  more: 'More results',
  results: (q) => `Results for “${q}”`,
  count: (n, more) => (n === 1 ? '1 message' : `${n} messages`) + (more ? ' (more below)' : ''),
  failed: 'The search failed; try again.',
  tooLong: 'Search for at most 200 characters.',
  empty: 'Type something to search for.',
  close: 'Close the search results',
  deleted: '[deleted]',
  direct: (names) => `with ${names}`,
});

const LIMIT = 20;
const MAX_QUERY = 200;
const EXCERPT = 240; // characters of a long body shown, around its first match
const SOCKET_WAIT = 8000; // ms without an answer over the socket before asking over HTTP instead

const $ = (id) => document.getElementById(id);

const S = {
  socket: null, // {send, connected} from the room page
  refs: 0,
  waiting: null, // the ref of the search on its way over the socket
  query: null, // {q, room, author}: what the shown results answer
  last: null, // the last message id shown (the next page comes before it)
  opener: null,
};

let ui = null;

// `in:#room`, `from:@user` and the rest, which is what is searched for.
export function parseQuery(raw) {
  let room = null, author = null;
  const rest = [];
  for (const word of raw.trim().split(/\s+/u)) {
    const inRoom = /^in:#?(\S+)$/iu.exec(word);
    const from = /^from:@?(\S+)$/iu.exec(word);
    if (inRoom) room = inRoom[1];
    else if (from) author = from[1];
    else if (word) rest.push(word);
  }
  return { q: rest.join(' '), room, author };
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/gu, '\\$&');

// Appends `text` to `target` with every case-insensitive occurrence of `q` in <mark>.
export function appendHighlighted(target, text, q) {
  if (!q) {
    target.append(text);
    return;
  }
  const pattern = new RegExp(escapeRegExp(q), 'giu');
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (!match[0]) break;
    target.append(text.slice(last, match.index));
    const mark = document.createElement('mark');
    mark.textContent = match[0];
    target.append(mark);
    last = match.index + match[0].length;
  }
  target.append(text.slice(last));
}

// A long body: the stretch around its first match, with … where it was cut.
function excerpt(body, q) {
  const text = body.replace(/\s+/gu, ' ').trim();
  const chars = Array.from(text);
  if (chars.length <= EXCERPT) return text;
  const at = q ? text.toLowerCase().indexOf(q.toLowerCase()) : -1;
  const startChar = at < 0 ? 0 : Math.max(0, Array.from(text.slice(0, at)).length - EXCERPT / 3);
  const piece = chars.slice(startChar, startChar + EXCERPT).join('');
  return (startChar > 0 ? '…' : '') + piece + (startChar + EXCERPT < chars.length ? '…' : '');
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short', hourCycle: 'h23' }); // 24-hour, as the room's times
}

// How the page names a room: as its sidebar or room list does (a direct conversation by the people
// in it), else by its address.
function roomLabel(slug) {
  const item = slug ? document.querySelector(`[data-slug="${CSS.escape(slug)}"]`) : null;
  const name = item?.querySelector('.sidebar-room-name, .room-card-name, .direct-card-name')?.textContent.trim();
  if (!name) return `#${slug}`;
  return item.closest('#sidebar-direct, .direct-cards') ? TEXT.direct(name) : `#${name}`;
}

function resultItem(m, q) {
  const item = make('li', 'search-result');
  const link = make('a', 'search-result-link');
  const room = typeof m.room === 'string' ? m.room : '';
  link.href = `/rooms/${encodeURIComponent(room)}/?message=${encodeURIComponent(m.id)}`;
  link.dataset.id = m.id;
  const head = make('span', 'search-result-head');
  const time = make('time', 'search-result-time muted', when(m.created_at));
  if (m.created_at) time.dateTime = m.created_at;
  head.append(
    make('span', 'search-result-room', roomLabel(room)),
    make('span', 'search-result-author', m.author || TEXT.deleted),
    time,
  );
  const body = make('span', 'search-result-body');
  appendHighlighted(body, excerpt(String(m.body || ''), q), q);
  link.append(head, body);
  item.append(link);
  return item;
}

function setStatus(text) {
  ui.status.textContent = text;
}

function open() {
  if (!ui.panel.hidden) return;
  ui.panel.hidden = false;
}

function close({ restoreFocus = true } = {}) {
  if (ui.panel.hidden) return;
  ui.panel.hidden = true;
  stopWaiting();
  if (restoreFocus) ui.input.focus();
}

function stopWaiting() {
  clearTimeout(S.waiting?.timer);
  S.waiting = null;
}

function show(frame, { append }) {
  stopWaiting();
  const q = S.query?.q || '';
  const messages = Array.isArray(frame.messages) ? frame.messages.filter((m) => m && m.id != null) : [];
  if (!append) ui.list.replaceChildren();
  ui.list.append(...messages.map((m) => resultItem(m, q)));
  if (messages.length) S.last = messages.at(-1).id;
  const shown = ui.list.children.length;
  ui.more.hidden = !frame.has_more || !messages.length;
  ui.more.disabled = false;
  ui.heading.textContent = TEXT.results(q);
  setStatus(shown ? TEXT.count(shown, !ui.more.hidden) : TEXT.none);
  ui.empty.hidden = shown > 0;
}

function fail(detail) {
  stopWaiting();
  ui.more.disabled = false;
  setStatus(detail || TEXT.failed);
}

async function overHttp(params, append) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value != null && value !== '') query.set(key, String(value));
  const asked = S.query;
  try {
    const response = await fetch(`/api/search/?${query}`, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    const data = await response.json().catch(() => null);
    if (asked !== S.query) return; // another search started meanwhile
    if (!response.ok) return fail(data?.detail);
    show(data || {}, { append });
  } catch {
    if (asked === S.query) fail();
  }
}

function run({ append = false } = {}) {
  const params = { q: S.query.q, room: S.query.room, author: S.query.author, limit: LIMIT };
  if (append && S.last != null) params.before = S.last;
  setStatus(TEXT.searching);
  if (!append) {
    ui.list.replaceChildren();
    ui.more.hidden = true;
    ui.empty.hidden = true;
    ui.heading.textContent = TEXT.results(S.query.q);
  } else {
    ui.more.disabled = true;
  }
  open();
  if (S.socket?.connected()) {
    const ref = `search-${++S.refs}`;
    const frame = { type: 'search', ref, q: params.q, limit: LIMIT };
    for (const key of ['room', 'author', 'before']) if (params[key] != null) frame[key] = params[key];
    S.waiting = { ref, append };
    if (S.socket.send(frame)) {
      // A socket that goes while the answer is on its way: the same question over HTTP.
      S.waiting.timer = setTimeout(() => {
        if (S.waiting?.ref !== ref) return;
        S.waiting = null;
        overHttp(params, append);
      }, SOCKET_WAIT);
      return;
    }
    S.waiting = null;
  }
  overHttp(params, append);
}

function submit() {
  const parsed = parseQuery(ui.input.value);
  if (!parsed.q) {
    open();
    ui.list.replaceChildren();
    ui.more.hidden = true;
    ui.empty.hidden = true;
    return setStatus(TEXT.empty);
  }
  if (Array.from(parsed.q).length > MAX_QUERY) {
    open();
    return setStatus(TEXT.tooLong);
  }
  S.query = parsed;
  S.last = null;
  run();
}

// A frame from the room page's socket: true when it was this module's (a `search` answer, or an
// error answering one).
export function handleSearchFrame(f) {
  if (f.type === 'search') {
    if (ui && S.waiting && f.ref === S.waiting.ref) show(f, { append: S.waiting.append });
    return true;
  }
  if (f.type === 'error' && typeof f.ref === 'string' && f.ref.startsWith('search-')) {
    if (ui && S.waiting && f.ref === S.waiting.ref) fail(f.detail);
    return true;
  }
  return false;
}

// The room page's socket: `send(frame)` (false when it is not open) and `connected()`.
export function connectSearch(socket) {
  S.socket = socket;
}

const isTyping = (el) => Boolean(el) && (el.isContentEditable || el.matches?.('input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit]), textarea, select'));

function onGlobalKey(event) {
  if (event.defaultPrevented || event.isComposing) return;
  const active = document.activeElement;
  const key = event.key.toLowerCase();
  const chord = (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && key === 'k';
  const slash = event.key === '/' && !event.ctrlKey && !event.metaKey && !event.altKey;
  if (!chord && !slash) return;
  if (active === ui.input) {
    if (chord) event.preventDefault(); // already here: not the browser's own search
    return;
  }
  // `/` types a slash in any text field; Ctrl+K leaves one that holds text being written alone.
  if (isTyping(active) && (slash || active.value || active.isContentEditable)) return;
  if (document.querySelector('dialog[open]')) return;
  event.preventDefault();
  S.opener = active && active !== document.body ? active : null;
  ui.input.focus();
  ui.input.select();
}

// Up and down move between the box and the results.
function onPanelKey(event) {
  const links = [...ui.list.querySelectorAll('.search-result-link')];
  if (ui.more && !ui.more.hidden) links.push(ui.more);
  const at = links.indexOf(document.activeElement);
  if (event.key === 'ArrowDown') {
    if (!links.length) return;
    event.preventDefault();
    links[Math.min(links.length - 1, at + 1)].focus();
  } else if (event.key === 'ArrowUp' && at >= 0) {
    event.preventDefault();
    (at === 0 ? ui.input : links[at - 1]).focus();
  }
}

function wire() {
  const form = $('search-form');
  if (!form) return;
  ui = {
    form, input: $('search-input'), panel: $('search-panel'), list: $('search-results'), status: $('search-status'),
    heading: $('search-heading'), more: $('search-more'), empty: $('search-empty'), close: $('search-close'),
  };
  ui.empty.textContent = TEXT.none;
  ui.more.textContent = TEXT.more;
  ui.close.setAttribute('aria-label', TEXT.close);
  ui.close.title = TEXT.close;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  ui.more.addEventListener('click', () => {
    if (S.query && S.last != null) run({ append: true });
  });
  ui.close.addEventListener('click', () => close());
  document.addEventListener('keydown', onGlobalKey);
  for (const node of [ui.input, ui.panel]) node.addEventListener('keydown', onPanelKey);
  // Escape closes the results (and then leaves the box for where the user was).
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.defaultPrevented) return;
    const inside = form.contains(document.activeElement) || ui.panel.contains(document.activeElement);
    if (!ui.panel.hidden && (inside || document.activeElement === document.body)) {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (document.activeElement === ui.input) {
      event.preventDefault();
      ui.input.blur();
      if (S.opener?.isConnected) S.opener.focus();
    }
  }, true);
  document.addEventListener('pointerdown', (event) => {
    if (!ui.panel.hidden && !ui.panel.contains(event.target) && !form.contains(event.target)) close({ restoreFocus: false });
  });
}

wire();
