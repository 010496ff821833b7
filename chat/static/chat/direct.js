// The "New message" picker of templates/chat/includes/direct_picker.html, on the room list, the
// room page (as a dialog) and /direct/new/ (as a page): a search over the people listed, at most
// `data-max` of them chosen, and names typed in when the list is cut short. The form posts to
// /direct/new/ just as it does without this script. Also the avatars' colours, which chat.js shares.

export function userHue(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

// Server-rendered avatars carry the name they stand for; their colour is the same as chat.js's.
export function paintAvatars(root = document) {
  for (const node of root.querySelectorAll('.avatar[data-name]')) node.style.setProperty('--hue', userHue(node.dataset.name));
}

const form = document.getElementById('direct-form');
const dialog = document.getElementById('direct-dialog');
let loadPeople = null; // set by wirePicker when the list is to be fetched

function wirePicker() {
  const search = form.querySelector('#direct-search');
  const list = form.querySelector('#direct-users');
  const none = form.querySelector('#direct-none');
  const add = form.querySelector('#direct-add');
  const chosen = form.querySelector('#direct-chosen');
  const start = form.querySelector('#direct-start');
  const max = Number(form.dataset.max) || 8;
  const boxes = () => [...list.querySelectorAll('input[name="users"]')];

  function update() {
    const names = boxes().filter((box) => box.checked).map((box) => box.value);
    chosen.textContent = names.length ? `With ${names.join(', ')}${names.length >= max ? ` (at most ${max})` : ''}` : '';
    for (const box of boxes()) box.disabled = !box.checked && names.length >= max;
    start.disabled = names.length === 0;
  }

  function filter() {
    const query = search.value.trim().toLowerCase();
    let shown = 0;
    for (const item of list.children) {
      const match = !query || item.dataset.username.toLowerCase().includes(query);
      item.hidden = !match;
      if (match) shown += 1;
    }
    none.hidden = shown > 0 || (!boxes().length && !list.dataset.src && !list.dataset.more);
    // A list cut short may lack the person: their name can be typed in (the server checks it).
    const exact = boxes().some((box) => box.value.toLowerCase() === query);
    add.hidden = !(list.dataset.more && query && !exact);
    add.textContent = `Add “${search.value.trim()}”`;
  }

  function choose(box) {
    if (!box.disabled) box.checked = true;
    search.value = '';
    filter();
    update();
  }

  function addTyped() {
    const name = search.value.trim();
    if (!name) return;
    const item = document.createElement('li');
    item.dataset.username = name;
    const label = document.createElement('label');
    label.className = 'direct-user';
    const box = document.createElement('input');
    Object.assign(box, { type: 'checkbox', name: 'users', value: name });
    const face = document.createElement('span');
    face.className = 'avatar avatar-small';
    face.dataset.name = name;
    face.setAttribute('aria-hidden', 'true');
    face.textContent = Array.from(name)[0].toUpperCase();
    const text = document.createElement('span');
    text.className = 'direct-user-name';
    text.textContent = name;
    label.append(box, face, text);
    item.append(label);
    list.prepend(item);
    paintAvatars(item);
    choose(box);
    search.focus();
  }

  // The dialogs' list comes from /direct/new/ (the same template) on first opening.
  let loading = null;
  loadPeople = () => {
    if (!list.dataset.src || loading) return loading;
    none.textContent = 'Loading…';
    none.hidden = false;
    loading = fetch(list.dataset.src, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then((response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return response.text();
      })
      .then((html) => {
        const page = new DOMParser().parseFromString(html, 'text/html');
        const people = page.getElementById('direct-users');
        const chosen = new Set(boxes().filter((box) => box.checked).map((box) => box.value));
        list.replaceChildren(...people.children);
        for (const box of boxes()) box.checked ||= chosen.has(box.value);
        if (people.dataset.more) list.dataset.more = people.dataset.more;
        none.textContent = boxes().length ? 'No one matches.' : 'Nobody else has an account yet.';
        delete list.dataset.src;
      })
      .catch(() => {
        none.textContent = 'The list of people could not be loaded: type a name to add it.';
        list.dataset.more = 'true';
        loading = null;
      })
      .finally(() => {
        paintAvatars(list);
        filter();
        update();
      });
    return loading;
  };

  search.addEventListener('input', filter);
  search.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      boxes().find((box) => !box.closest('li').hidden)?.focus();
    } else if (event.key === 'Enter') {
      // Enter picks the only match (or the typed name) rather than sending the form half-chosen.
      event.preventDefault();
      if (!add.hidden) return addTyped();
      const shown = boxes().filter((box) => !box.closest('li').hidden);
      if (shown.length === 1 && search.value.trim()) choose(shown[0]);
    }
  });
  add.addEventListener('click', addTyped);
  list.addEventListener('change', update);
  form.addEventListener('submit', (event) => {
    if (!boxes().some((box) => box.checked)) event.preventDefault();
  });
  filter();
  update();
}

export function openDirectPicker() {
  if (!dialog) return false;
  dialog.showModal();
  dialog.querySelector('#direct-search').focus();
  loadPeople?.();
  return true;
}

function wireDialog() {
  for (const opener of document.querySelectorAll('[data-open-direct]')) {
    opener.setAttribute('role', 'button');
    opener.setAttribute('aria-haspopup', 'dialog');
    opener.addEventListener('click', (event) => {
      if (openDirectPicker()) event.preventDefault();
    });
    opener.addEventListener('keydown', (event) => {
      if (event.key === ' ') {
        event.preventDefault();
        opener.click();
      }
    });
  }
  dialog.querySelector('[data-close-direct]')?.addEventListener('click', () => dialog.close());
  // A click on the backdrop (the dialog element itself, outside its content) closes it.
  dialog.addEventListener('click', (event) => {
    if (event.target !== dialog) return;
    const box = dialog.getBoundingClientRect();
    const inside = event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) dialog.close();
  });
}

if (form) wirePicker();
if (dialog) wireDialog();
paintAvatars();
