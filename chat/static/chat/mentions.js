// @mention autocomplete for a composer: typing `@` and the start of a name offers the people
// who match, the room's own first (online, recent authors), then anyone the server knows
// (GET /api/users/?q=, active accounts, at most 10). Up and Down move, Enter or Tab picks, Escape
// closes, a click picks. The list is a listbox the text box points at (aria-controls,
// aria-activedescendant): the focus never leaves the text box and the options are no Tab stops.

const TEXT = Object.freeze({
  label: 'People to mention',
  one: '1 person to mention: up and down arrows to choose, Enter to pick',
  many: (n) => `${n} people to mention: up and down arrows to choose, Enter to pick`,
});

const SHOWN = 8;
const LOOKUP_DELAY = 150; // ms after the last key before asking the server
// As chat.js marks mentions: an @ not preceded by a name character, then name characters.
const QUERY = /(?<![\p{L}\p{N}_.+\-@])@([\p{L}\p{N}_.+\-]{0,150})$/u;

let counter = 0;

const lookups = new Map(); // lowercased prefix -> Promise of usernames (shared by both composers)

function lookup(prefix) {
  const key = prefix.toLowerCase();
  if (!lookups.has(key)) {
    const url = `/api/users/?q=${encodeURIComponent(prefix)}`;
    const names = fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then((response) => (response.ok ? response.json() : { users: [] }))
      .then((body) => (body.users || []).map((user) => user.username))
      .catch(() => {
        lookups.delete(key); // a failure is not remembered: the next key asks again
        return [];
      });
    lookups.set(key, names);
  }
  return lookups.get(key);
}

// `input`: the textarea; `form`: its composer; `local()`: the room's people, the likeliest first;
// `me`: the signed-in user, never offered.
export function wireMentions({ input, form, local, me }) {
  if (!input || !form) return;
  const id = `mentions-${++counter}`;
  const list = document.createElement('ul');
  list.id = id;
  list.className = 'mention-list';
  list.setAttribute('role', 'listbox');
  list.setAttribute('aria-label', TEXT.label);
  list.hidden = true;
  const status = document.createElement('span');
  status.className = 'visually-hidden';
  status.setAttribute('role', 'status');
  form.append(list, status);
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-haspopup', 'listbox');
  input.setAttribute('aria-controls', id);

  let query = null; // {start, prefix}: the @mention being typed, or null
  let names = [];
  let active = -1;
  let timer = null;

  const isOpen = () => !list.hidden;

  function hide() {
    names = [];
    active = -1;
    list.hidden = true;
    list.replaceChildren();
    input.removeAttribute('aria-activedescendant');
    status.textContent = '';
  }

  function close() {
    clearTimeout(timer);
    query = null;
    hide();
  }

  function setActive(index) {
    active = index;
    for (const [i, option] of [...list.children].entries()) {
      option.setAttribute('aria-selected', String(i === active));
      if (i === active) {
        input.setAttribute('aria-activedescendant', option.id);
        option.scrollIntoView({ block: 'nearest' });
      }
    }
  }

  function render(found) {
    names = found.slice(0, SHOWN);
    if (!names.length) return hide(); // the server's answer may still come
    list.replaceChildren(...names.map((name, i) => {
      const option = document.createElement('li');
      option.id = `${id}-${i}`;
      option.className = 'mention-option';
      option.setAttribute('role', 'option');
      option.dataset.username = name;
      option.textContent = `@${name}`;
      return option;
    }));
    // Above the text box, at its left edge.
    list.style.left = `${input.offsetLeft}px`;
    list.style.bottom = `${form.clientHeight - input.offsetTop + 4}px`;
    list.hidden = false;
    setActive(0);
    status.textContent = names.length === 1 ? TEXT.one : TEXT.many(names.length);
  }

  function matching(prefix, candidates) {
    const lower = prefix.toLowerCase();
    const seen = new Set([me.toLowerCase()]);
    const found = [];
    for (const name of candidates) {
      const key = name.toLowerCase();
      if (seen.has(key) || !key.startsWith(lower)) continue;
      seen.add(key);
      found.push(name);
    }
    return found;
  }

  function update() {
    const before = input.value.slice(0, input.selectionStart);
    const match = input.selectionStart === input.selectionEnd ? QUERY.exec(before) : null;
    if (!match) return close();
    const prefix = match[1];
    query = { start: before.length - prefix.length - 1, prefix };
    const mine = matching(prefix, local());
    render(mine);
    clearTimeout(timer);
    if (!prefix) return;
    timer = setTimeout(async () => {
      const known = await lookup(prefix);
      if (query?.prefix === prefix) render(matching(prefix, [...mine, ...known]));
    }, LOOKUP_DELAY);
  }

  function pick(index) {
    const name = names[index];
    if (!name || !query) return;
    const end = query.start + 1 + query.prefix.length;
    const after = input.value.slice(end);
    const insert = `@${name}${after.startsWith(' ') ? '' : ' '}`;
    input.value = input.value.slice(0, query.start) + insert + after;
    const caret = query.start + insert.length + (after.startsWith(' ') ? 1 : 0);
    input.setSelectionRange(caret, caret);
    close();
    input.dispatchEvent(new Event('input', { bubbles: true })); // the composer resizes and counts
  }

  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('blur', () => setTimeout(() => { if (document.activeElement !== input) close(); }));
  // Capture, on the form: these keys belong to the list while it is open, before the composer
  // sends on Enter or an open thread closes on Escape.
  form.addEventListener('keydown', (event) => {
    if (event.target !== input || !isOpen() || event.isComposing) return;
    const moves = { ArrowDown: 1, ArrowUp: -1 };
    if (event.key in moves) setActive((active + moves[event.key] + names.length) % names.length);
    else if ((event.key === 'Enter' && !event.shiftKey) || (event.key === 'Tab' && !event.shiftKey)) pick(active);
    else if (event.key === 'Escape') close();
    else return;
    event.preventDefault();
    event.stopPropagation();
  }, true);
  // The focus stays in the text box: the option is picked on the press, before a blur.
  list.addEventListener('pointerdown', (event) => {
    const option = event.target.closest('.mention-option');
    if (!option) return;
    event.preventDefault();
    pick([...list.children].indexOf(option));
  });
}
