// Links to a message: the "Copy link" tool, and a page opened from such a link
// (/rooms/<slug>/?message=<id>), which shows the message with the history around it, highlighted.
//
// The page joins as always (the newest messages, from which it follows the room live and counts
// seqs), then asks for the history around the linked message. When that page does not reach the
// newest ones, a gap lies between them: the page fills it forwards (`history` with `after`) as the
// reader scrolls down to it. The newest seq stays the one the join gave, so the messages in the
// gap are neither a missing stretch to catch up on nor marked read: the read marker moves only
// when the reader reaches the bottom, as everywhere.

const TEXT = Object.freeze({
  copy: 'Copy link to message',
  copied: 'Link copied.',
  copyThis: 'Copy this link: ',
  gap: 'Show newer messages',
  loading: 'Loading…',
  gone: 'The linked message is no longer in this room.',
});

export const LINK_ICON = 'M6.6 9.4a.75.75 0 0 1 0-1.06l2.75-2.75a.75.75 0 1 1 1.06 1.06L7.66 9.4a.75.75 0 0 1-1.06 0M4.3 8.1l1.06 1.06-1.4 1.4a1.5 1.5 0 0 0 2.12 2.12l1.4-1.4 1.06 1.06-1.4 1.4a3 3 0 0 1-4.24-4.24zm7.4-.2L10.64 6.84l1.4-1.4a1.5 1.5 0 0 0-2.12-2.12l-1.4 1.4L7.46 3.66l1.4-1.4a3 3 0 0 1 4.24 4.24z';
export const COPY_LINK_LABEL = TEXT.copy;

const AROUND_LIMIT = 50;
const GAP_LIMIT = 100;
const RETRY_AFTER = 10000; // ms

// The message a link names: ?message=<id>.
export function linkedMessageId() {
  const raw = new URLSearchParams(location.search).get('message');
  return raw && /^[1-9]\d{0,14}$/.test(raw) ? Number(raw) : null;
}

// A reply's link opens its thread (#thread-<id>, as the page does already) over the thread's
// first message in the room's flow.
export function messageUrl(room, node) {
  const url = new URL(`/rooms/${encodeURIComponent(room)}/`, location.origin);
  const root = node.dataset.replyTo;
  url.searchParams.set('message', root || node.dataset.id);
  if (root) url.hash = `thread-${root}`;
  return url.href;
}

export async function copyMessageLink(room, node, toast) {
  const url = messageUrl(room, node);
  try {
    await navigator.clipboard.writeText(url);
    toast(TEXT.copied);
  } catch {
    toast(TEXT.copyThis + url); // no clipboard (a page not served over https, or refused)
  }
}

// `c`: what the page shares with this module (its state, its list and the functions that build
// and place messages), see chat.js.
export function messageLinks(c) {
  const target = linkedMessageId();
  let tailFirst = null; // the first seq of the newest messages the join brought
  let gap = null; // {after, node}: the seqs after `after` and before tailFirst are not shown yet
  let observer = null;
  let pending = false; // the history around the linked message is on its way

  function highlight(node) {
    node.classList.add('message-linked');
    node.focus({ preventScroll: true });
    node.scrollIntoView({ block: 'center' });
    c.S.lastScrollTop = c.ui.list.scrollTop;
  }

  function build(messages) {
    const fragment = document.createDocumentFragment();
    for (const m of messages) {
      if (c.S.bySeq.has(m.seq)) continue;
      const held = c.S.messages.get(m.id);
      const current = c.isNewer(m, held) ? m : held;
      c.S.messages.set(m.id, current);
      if (current.reply_to != null) { // its thread's, not the flow's
        c.S.bySeq.set(m.seq, null);
        continue;
      }
      const node = c.fillMessage(c.buildMessage(current.author), current);
      c.S.bySeq.set(m.seq, node);
      fragment.append(node);
    }
    return fragment;
  }

  function closeGap() {
    observer?.disconnect();
    gap?.node.remove();
    gap = null;
  }

  function loadGap() {
    // A request lost with its socket (no answer for a while) is asked again.
    if (!gap || (gap.busy && Date.now() - gap.busy < RETRY_AFTER) || !c.S.joined) return;
    gap.busy = c.send({ type: 'history', room: c.room, after: gap.after, limit: GAP_LIMIT, ref: 'after' }) && Date.now();
    if (gap.busy) gap.node.querySelector('button').textContent = TEXT.loading;
  }

  function openGap(after) {
    const node = document.createElement('div');
    node.className = 'history-gap';
    const more = document.createElement('button');
    more.type = 'button';
    more.className = 'btn btn-quiet btn-small';
    more.textContent = TEXT.gap;
    more.addEventListener('click', loadGap);
    node.append(more);
    gap = { after, node, busy: 0 }; // busy: when the pending request was sent
    // Scrolling down to the gap fills it, as scrolling up to the top loads older messages.
    observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadGap();
    }, { root: c.ui.list });
    observer.observe(node);
    return node;
  }

  // After the first `joined`: true when the page was opened from a link and takes the view over.
  function start() {
    if (target === null) return false;
    const shown = c.S.messages.get(target);
    const node = shown && c.S.bySeq.get(shown.seq);
    if (node) {
      highlight(node);
      return true;
    }
    tailFirst = c.S.firstSeq;
    c.S.historyBusy = c.send({ type: 'history', room: c.room, around: target, limit: AROUND_LIMIT, ref: 'around' });
    pending = c.S.historyBusy;
    return c.S.historyBusy;
  }

  function onAround(f) {
    c.S.historyBusy = false;
    pending = false;
    const messages = (f.messages || []).slice().sort((a, b) => a.seq - b.seq);
    const older = messages.filter((m) => tailFirst === null || m.seq < tailFirst);
    c.keepingPlace(() => {
      const fragment = build(older);
      const last = older.at(-1)?.seq;
      if (last !== undefined && tailFirst !== null && last + 1 < tailFirst && f.has_more_after) fragment.append(openGap(last));
      c.marker.after(fragment);
      if (older.length) c.S.firstSeq = older[0].seq;
      c.S.hasMore = Boolean(f.has_more) && c.S.firstSeq > 1;
      c.updateMarker();
      c.refreshDaySeparators();
    });
    const m = c.S.messages.get(target);
    const node = m && c.S.bySeq.get(m.seq);
    if (node) highlight(node);
    else if (m?.reply_to != null) { // a reply: its thread's first message
      const root = c.S.messages.get(m.reply_to);
      const rootNode = root && c.S.bySeq.get(root.seq);
      if (rootNode) highlight(rootNode);
    }
  }

  function onAfter(f) {
    if (!gap) return;
    gap.busy = 0;
    gap.node.querySelector('button').textContent = TEXT.gap;
    const messages = (f.messages || []).filter((m) => m.seq > gap.after && m.seq < tailFirst).sort((a, b) => a.seq - b.seq);
    c.keepingPlace(() => {
      gap.node.before(build(messages));
      if (messages.length) gap.after = messages.at(-1).seq;
      if (!f.has_more_after || !messages.length || gap.after + 1 >= tailFirst) closeGap();
      c.refreshDaySeparators();
    });
    if (gap) { // observed afresh: a gap still in view (or back in view) loads the next page
      observer.unobserve(gap.node);
      observer.observe(gap.node);
    }
  }

  // A `history` reply this module asked for: true when it was handled here.
  function onHistory(f) {
    if (f.ref === 'around') onAround(f);
    else if (f.ref === 'after') onAfter(f);
    else return false;
    return true;
  }

  // An error answering one of this module's requests: true when it was handled here.
  function onError(f) {
    if (f.ref === 'around') {
      c.S.historyBusy = false;
      pending = false;
      c.updateMarker();
      c.toast(TEXT.gone);
      c.scrollToBottom();
      return true;
    }
    if (f.ref === 'after' && gap) {
      gap.busy = 0;
      gap.node.querySelector('button').textContent = TEXT.gap;
    }
    return false;
  }

  // Whether the read marker must stay: the page shows an older stretch and has not loaded (so the
  // reader has not seen) everything up to the newest messages.
  const holdsRead = () => pending || gap !== null;

  return { start, onHistory, onError, holdsRead };
}
