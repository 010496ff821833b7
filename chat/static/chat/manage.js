// Room management on the room page: the members dialog (everyone who may read the room), the
// settings dialog (its creator, moderators and staff), and the live frames about them:
// `members`, `room_updated` and `room_invited` (docs/protocol.md). Changes go through the HTTP API
// (docs/api.md), which checks who may make them exactly as the socket does.

const TEXT = Object.freeze({
  loading: 'Loading members…',
  count: (n) => (n === 1 ? '1 member' : `${n} members`),
  creator: 'Creator',
  moderator: 'Moderator',
  you: ' (you)',
  remove: 'Remove',
  removeLabel: (name) => `Remove ${name} from the room`,
  invited: (name) => `${name} was invited.`,
  removed: (name) => `${name} was removed.`,
  nameNeeded: 'Give the room a name.',
  userNeeded: 'Type the username of the person to invite.',
  archiveConfirm: 'Archive for everyone? Click again',
  failed: 'That did not work; try again.',
});

let cfg = null; // {room, me, canManage, onInfo}
let members = [];
const $ = (id) => document.getElementById(id);

function csrfToken() {
  return document.querySelector('.manage-dialog input[name="csrfmiddlewaretoken"]')?.value || '';
}

// The API's JSON, or an Error carrying its `detail`.
async function api(method, path, body) {
  const headers = { Accept: 'application/json', 'X-CSRFToken': csrfToken() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`/api/rooms/${encodeURIComponent(cfg.room)}/${path}`, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(data?.detail || TEXT.failed);
  return data;
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- members

function renderMembers() {
  const list = $('members-list');
  if (!list) return;
  list.replaceChildren(...members.map((m) => {
    const item = make('li', 'member');
    item.dataset.username = m.username;
    const who = make('span', 'member-name', m.username);
    if (m.username === cfg.me) who.append(make('span', 'muted', TEXT.you));
    item.append(who);
    if (m.creator) item.append(make('span', 'tag', TEXT.creator));
    else if (m.role === 'moderator') item.append(make('span', 'tag', TEXT.moderator));
    if (cfg.canManage && m.username !== cfg.me) {
      const remove = make('button', 'btn btn-small btn-quiet member-remove', TEXT.remove);
      remove.type = 'button';
      remove.setAttribute('aria-label', TEXT.removeLabel(m.username));
      remove.addEventListener('click', () => removeMember(m.username));
      item.append(remove);
    }
    return item;
  }));
  $('members-count').textContent = TEXT.count(members.length);
}

async function openMembers() {
  const dialog = $('members-dialog');
  $('members-status').textContent = '';
  $('members-count').textContent = TEXT.loading;
  dialog.showModal();
  try {
    members = (await api('GET', 'members/')).members;
    renderMembers();
  } catch (error) {
    $('members-status').textContent = error.message;
  }
}

async function invite(event) {
  event.preventDefault();
  const input = $('invite-user');
  const error = $('invite-error');
  const username = input.value.trim();
  input.removeAttribute('aria-invalid');
  error.textContent = '';
  if (!username) {
    input.setAttribute('aria-invalid', 'true');
    error.textContent = TEXT.userNeeded;
    return input.focus();
  }
  try {
    members = (await api('POST', 'members/', { user: username })).members;
    renderMembers();
    input.value = '';
    $('members-status').textContent = TEXT.invited(username);
  } catch (failure) {
    input.setAttribute('aria-invalid', 'true');
    error.textContent = failure.message;
    input.focus();
  }
}

async function removeMember(username) {
  try {
    await api('DELETE', `members/${encodeURIComponent(username)}/`);
    members = members.filter((m) => m.username !== username);
    renderMembers();
    $('members-status').textContent = TEXT.removed(username);
    $('members-close').focus();
  } catch (error) {
    $('members-status').textContent = error.message;
  }
}

// Leaving for good: the room list is where to go next.
async function part() {
  try {
    await api('DELETE', `members/${encodeURIComponent(cfg.me)}/`);
    location.assign(document.querySelector('.back-link')?.href || '/');
  } catch (error) {
    $('members-status').textContent = error.message;
  }
}

// ---------------------------------------------------------------- settings

function openSettings() {
  const archive = $('archive-button');
  archive.dataset.armed = '';
  archive.textContent = archive.dataset.label;
  $('settings-error').textContent = '';
  $('settings-name').removeAttribute('aria-invalid');
  $('settings-dialog').showModal();
}

async function saveSettings(event) {
  event.preventDefault();
  const name = $('settings-name');
  const error = $('settings-error');
  if (!name.value.trim()) {
    name.setAttribute('aria-invalid', 'true');
    error.textContent = TEXT.nameNeeded;
    return name.focus();
  }
  try {
    const changes = { name: name.value, topic: $('settings-topic').value, private: $('settings-private').checked };
    const { info } = await api('PATCH', '', changes);
    applyInfo(info);
    $('settings-dialog').close();
    $('settings-open')?.focus();
  } catch (failure) {
    error.textContent = failure.message;
  }
}

// Two clicks: the first asks, the second archives (the page then closes the room, as for everyone).
async function archive() {
  const button = $('archive-button');
  if (!button.dataset.armed) {
    button.dataset.armed = '1';
    button.textContent = TEXT.archiveConfirm;
    return;
  }
  try {
    await api('PATCH', '', { archived: true });
    $('settings-dialog').close();
  } catch (error) {
    $('settings-error').textContent = error.message;
  }
}

// The room's name, topic or private flag changed (here or on another page).
function applyInfo(info) {
  if (!info) return;
  cfg.onInfo(info);
  const tag = $('room-private-tag');
  if (tag) tag.hidden = !info.private;
  const listed = document.querySelector(`.sidebar-rooms li[data-slug="${CSS.escape(cfg.room)}"] .sidebar-room-name`);
  if (listed && info.name) listed.textContent = info.name;
  const dialog = $('settings-dialog');
  if (dialog && !dialog.open) {
    $('settings-name').value = info.name;
    $('settings-topic').value = info.topic || '';
    $('settings-private').checked = Boolean(info.private);
  }
}

// ---------------------------------------------------------------- live frames

export function onMembers(f) {
  if (!Array.isArray(f.members)) return;
  members = f.members;
  if ($('members-dialog')?.open) renderMembers();
}

export function onRoomUpdated(f) {
  applyInfo(f.info);
}

// Invited to a room: it joins this page's sidebar, whichever room the page shows.
export function onRoomInvited(f) {
  const list = document.querySelector('.sidebar-rooms:not(.sidebar-direct)');
  if (!list || typeof f.room !== 'string' || list.querySelector(`li[data-slug="${CSS.escape(f.room)}"]`)) return;
  const item = make('li');
  item.dataset.slug = f.room;
  const anchor = make('a', 'sidebar-room');
  anchor.href = `/rooms/${encodeURIComponent(f.room)}/`;
  anchor.append(make('span', 'room-hash', f.info?.private ? '🔒' : '#'), make('span', 'sidebar-room-name', f.info?.name || f.room));
  anchor.firstChild.setAttribute('aria-hidden', 'true');
  item.append(anchor);
  const after = [...list.children].find((li) => li.textContent.trim().localeCompare(anchor.textContent.trim()) > 0);
  list.insertBefore(item, after || null);
}

// `options`: {room, me, canManage, onInfo(info)}, the last showing a room's new name and topic.
export function wireManage(options) {
  cfg = options;
  $('members-open')?.addEventListener('click', openMembers);
  $('members-close')?.addEventListener('click', () => { $('members-dialog').close(); $('members-open')?.focus(); });
  $('part-button')?.addEventListener('click', part);
  $('invite-form')?.addEventListener('submit', invite);
  $('settings-open')?.addEventListener('click', openSettings);
  $('settings-form')?.addEventListener('submit', saveSettings);
  $('settings-cancel')?.addEventListener('click', () => { $('settings-dialog').close(); $('settings-open')?.focus(); });
  const archiveButton = $('archive-button');
  if (archiveButton) {
    archiveButton.dataset.label = archiveButton.textContent;
    archiveButton.addEventListener('click', archive);
  }
}
