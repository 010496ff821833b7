// Files on the room page: attaching them to the next message (a button with a real file input,
// drag and drop onto the room, pasting from the clipboard), each uploaded at once over HTTP
// (POST /api/rooms/<slug>/uploads/, docs/api.md) with its progress shown in a chip above the
// composer, and showing the `attachments` of message objects: images as thumbnails that open the
// full image, other files as a card with a download link. Everything users named (file names) is
// set as text, never as HTML.

const TEXT = Object.freeze({
  attach: 'Attach files',
  files: 'Files to send',
  uploading: 'Uploading…',
  ready: 'Ready to send',
  notUploaded: 'Not uploaded',
  cancel: (name) => `Remove ${name}`,
  cancelUpload: (name) => `Cancel the upload of ${name}`,
  refused: (name, detail) => `${name} was not uploaded: ${detail}`,
  failed: 'the upload failed; check the connection and try again.',
  wait: 'Wait until the files have finished uploading.',
  tooMany: (n) => `At most ${n} files go with one message.`,
  drop: 'Drop files to attach them',
  download: (name) => `Download ${name}`,
  open: (name) => `Open ${name} full size`,
  attachments: 'Attachments',
  progress: (name) => `Uploading ${name}`,
});

const UNITS = ['bytes', 'KB', 'MB', 'GB', 'TB'];
const THUMB_WIDTH = 320, THUMB_HEIGHT = 240; // the box a thumbnail is shown in (CSS px)

// 1234567 -> "1.2 MB" (1024 to a KB, as file managers commonly count).
export function humanSize(bytes) {
  let n = Number(bytes) || 0;
  let unit = 0;
  while (n >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  if (unit === 0) return n === 1 ? '1 byte' : `${n} bytes`;
  const shown = n < 10 ? n.toFixed(1).replace(/\.0$/, '') : String(Math.round(n));
  return `${shown} ${UNITS[unit]}`;
}

// A thumbnail's size in the box, from the image's own size: the space is kept before it loads.
export function thumbSize(width, height) {
  const w = Number(width), h = Number(height);
  if (!(w > 0 && h > 0)) return { width: THUMB_WIDTH, height: THUMB_HEIGHT / 2 };
  const scale = Math.min(1, THUMB_WIDTH / w, THUMB_HEIGHT / h);
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
const FILE_ICON = 'M4 1.5h5.2L13 5.3V14a.5.5 0 0 1-.5.5h-8.5A.5.5 0 0 1 3.5 14V2a.5.5 0 0 1 .5-.5m1 1.5v10h6.5V6H8.5V3z';

function fileIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '28');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon file-card-icon');
  const shape = document.createElementNS(SVG, 'path');
  shape.setAttribute('fill', 'currentColor');
  shape.setAttribute('d', FILE_ICON);
  svg.append(shape);
  return svg;
}

const isImage = (a) => typeof a.content_type === 'string' && a.content_type.startsWith('image/') && Boolean(a.thumbnail_url);

// Only the server's own addresses are followed (`/files/...`).
function sameOrigin(url) {
  try {
    const parsed = new URL(url, location.origin);
    return parsed.origin === location.origin ? parsed.href : null;
  } catch {
    return null;
  }
}

function attachmentNode(a) {
  const url = sameOrigin(a.url);
  if (isImage(a) && url && sameOrigin(a.thumbnail_url)) {
    const open = make('a', 'attachment attachment-image');
    open.href = url;
    open.target = '_blank';
    open.rel = 'noopener';
    open.title = TEXT.open(a.name);
    const { width, height } = thumbSize(a.width, a.height);
    const img = make('img', 'attachment-thumb');
    Object.assign(img, { src: sameOrigin(a.thumbnail_url), alt: a.name || '', width, height, loading: 'lazy', decoding: 'async' });
    open.append(img);
    return open;
  }
  const card = make('div', 'attachment file-card');
  const text = make('div', 'file-card-text');
  const name = make('span', 'file-card-name', a.name || '');
  name.title = a.name || '';
  text.append(name, make('span', 'file-card-size muted', humanSize(a.size)));
  card.append(fileIcon(), text);
  if (url) {
    const download = make('a', 'btn btn-small file-card-download', 'Download');
    download.href = url;
    download.download = a.name || '';
    download.setAttribute('aria-label', TEXT.download(a.name));
    card.append(download);
  }
  return card;
}

const shownAttachments = new WeakMap(); // message element -> the attachments it shows (a key)

// A message's files under its body; none on a deleted message. Rebuilt only when they changed, so
// an edit or a reaction does not reload the images.
export function renderAttachments(node, m) {
  const list = m.deleted || !Array.isArray(m.attachments) ? [] : m.attachments.filter((a) => a && typeof a === 'object');
  const key = JSON.stringify(list.map((a) => [a.id, a.url, a.thumbnail_url]));
  let box = node.querySelector(':scope > .message-main > .attachments-shown');
  if (shownAttachments.get(node) === key && (box || !list.length)) return;
  shownAttachments.set(node, key);
  if (!list.length) {
    box?.remove();
    return;
  }
  if (!box) {
    box = make('div', 'attachments-shown');
    box.setAttribute('role', 'group');
    box.setAttribute('aria-label', TEXT.attachments);
    node.querySelector('.body').after(box);
  }
  box.replaceChildren(...list.map(attachmentNode));
}

// ---------------------------------------------------------------- attaching

function csrfToken() {
  const field = document.querySelector('input[name="csrfmiddlewaretoken"]');
  if (field?.value) return field.value;
  return document.cookie.split('; ').find((c) => c.startsWith('csrftoken='))?.slice('csrftoken='.length) || '';
}

const pad = (n) => String(n).padStart(2, '0');

// A pasted screenshot comes as "image.png" (or with no name): it gets one with the time in it.
function pastedName(file) {
  if (file.name && !/^image\.\w+$/i.test(file.name)) return file;
  const now = new Date();
  const stamp = `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  const ext = (file.type.split('/')[1] || 'png').replace(/[^a-z0-9]/gi, '') || 'png';
  return new File([file], `screenshot-${stamp}.${ext}`, { type: file.type, lastModified: file.lastModified });
}

// `c`: {room, form (the composer), input (its textarea), drop (where files may be dropped),
// maxFiles, onChange (the set of chips changed: the Send button may change)}.
export function wireAttachments(c) {
  const chips = c.form.querySelector('.attachment-chips');
  const picker = c.form.querySelector('.attach-input');
  const button = c.form.querySelector('.attach-button');
  const status = c.form.querySelector('.attach-status');
  const uploads = []; // {file, xhr, chip, state: 'uploading' | 'done' | 'failed', result}
  let dragDepth = 0;

  function say(text) {
    status.textContent = text;
    status.hidden = !text;
  }

  function changed() {
    chips.hidden = uploads.length === 0;
    c.onChange?.();
  }

  function remove(upload, { focusNext = false } = {}) {
    const at = uploads.indexOf(upload);
    if (at < 0) return;
    if (upload.state === 'uploading') upload.xhr.abort();
    uploads.splice(at, 1);
    upload.chip.remove();
    if (focusNext) { // to the next chip's button, or back to the message box
      const next = uploads[at] || uploads[at - 1];
      (next ? next.chip.querySelector('.chip-remove') : c.input).focus();
    }
    if (!uploads.some((u) => u.state === 'failed')) say('');
    changed();
  }

  function chipFor(upload) {
    const chip = make('li', 'attachment-chip');
    chip.dataset.state = 'uploading';
    const name = make('span', 'chip-name', upload.file.name);
    name.title = upload.file.name;
    const size = make('span', 'chip-size muted', humanSize(upload.file.size));
    const bar = make('progress', 'chip-progress');
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute('aria-label', TEXT.progress(upload.file.name));
    const note = make('span', 'chip-note');
    note.setAttribute('aria-live', 'polite');
    const close = make('button', 'chip-remove', '×');
    close.type = 'button';
    close.setAttribute('aria-label', TEXT.cancelUpload(upload.file.name));
    close.title = close.getAttribute('aria-label');
    close.addEventListener('click', () => remove(upload, { focusNext: true }));
    chip.append(name, size, bar, note, close);
    return chip;
  }

  function settle(upload, state, note) {
    upload.state = state;
    const chip = upload.chip;
    chip.dataset.state = state;
    chip.querySelector('.chip-progress').remove();
    chip.querySelector('.chip-note').textContent = note;
    const close = chip.querySelector('.chip-remove');
    close.setAttribute('aria-label', TEXT.cancel(upload.file.name));
    close.title = close.getAttribute('aria-label');
    if (state === 'done' && upload.result?.thumbnail_url && sameOrigin(upload.result.thumbnail_url)) {
      const preview = make('img', 'chip-thumb');
      Object.assign(preview, { src: sameOrigin(upload.result.thumbnail_url), alt: '', width: 28, height: 28 });
      chip.prepend(preview);
    }
    changed();
  }

  function start(file) {
    const upload = { file, xhr: new XMLHttpRequest(), chip: null, state: 'uploading', result: null };
    upload.chip = chipFor(upload);
    uploads.push(upload);
    chips.append(upload.chip);
    const xhr = upload.xhr;
    xhr.open('POST', `/api/rooms/${encodeURIComponent(c.room)}/uploads/`);
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) upload.chip.querySelector('.chip-progress')?.setAttribute('value', String(Math.round((100 * event.loaded) / event.total)));
    });
    xhr.addEventListener('load', () => {
      if (!uploads.includes(upload)) return;
      const data = xhr.response && typeof xhr.response === 'object' ? xhr.response : null;
      if (xhr.status === 201 && data && data.id != null) {
        upload.result = data;
        settle(upload, 'done', TEXT.ready);
        return;
      }
      const detail = data?.detail || `HTTP ${xhr.status}`;
      settle(upload, 'failed', TEXT.notUploaded); // the reason, in full, in the alert above the chips
      upload.chip.title = detail;
      say(TEXT.refused(file.name, detail));
    });
    xhr.addEventListener('error', () => {
      if (!uploads.includes(upload)) return;
      settle(upload, 'failed', TEXT.notUploaded);
      upload.chip.title = TEXT.failed;
      say(TEXT.refused(file.name, TEXT.failed));
    });
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
    changed();
  }

  function add(files) {
    const list = [...files].filter((f) => f instanceof File);
    if (!list.length) return;
    const room = c.maxFiles - uploads.filter((u) => u.state !== 'failed').length;
    if (list.length > room) say(TEXT.tooMany(c.maxFiles));
    else say('');
    for (const file of list.slice(0, Math.max(0, room))) start(file);
  }

  button.addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    add(picker.files);
    picker.value = ''; // the same file may be chosen again
  });

  c.input.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return;
    event.preventDefault(); // the file, not its name as text
    add(files.map((f) => (f.type.startsWith('image/') ? pastedName(f) : f)));
  });

  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes('Files');
  c.drop.addEventListener('dragenter', (event) => {
    if (!hasFiles(event) || c.input.disabled) return;
    event.preventDefault();
    dragDepth += 1;
    c.drop.classList.add('dragging');
  });
  c.drop.addEventListener('dragover', (event) => {
    if (!hasFiles(event) || c.input.disabled) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  c.drop.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) c.drop.classList.remove('dragging');
  });
  c.drop.addEventListener('drop', (event) => {
    dragDepth = 0;
    c.drop.classList.remove('dragging');
    if (!hasFiles(event) || c.input.disabled) return;
    event.preventDefault();
    add(event.dataTransfer.files);
    c.input.focus();
  });
  c.drop.dataset.dropLabel = TEXT.drop;
  // A file dropped anywhere else on the page would make the browser leave it to show the file.
  for (const type of ['dragover', 'drop']) {
    document.addEventListener(type, (event) => {
      if (hasFiles(event) && !event.defaultPrevented) {
        event.preventDefault();
        if (type === 'dragover') event.dataTransfer.dropEffect = 'none';
      }
    });
  }

  return {
    // The finished uploads, in the wire form of an attachment.
    ready: () => uploads.filter((u) => u.state === 'done').map((u) => u.result),
    busy: () => uploads.some((u) => u.state === 'uploading'),
    // After a send: the chips of the files that went go; failed ones stay, with their reason.
    clearSent() {
      for (const upload of uploads.filter((u) => u.state === 'done')) remove(upload);
    },
    warnBusy: () => say(TEXT.wait),
    setEnabled(enabled) {
      button.disabled = picker.disabled = !enabled;
    },
  };
}
