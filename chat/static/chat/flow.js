// The room page's flow of messages and its connection, as a reader meets them: consecutive
// messages by one person shown as one group, the keyboard inside a message, and the banner shown
// while the connection is lost (with the reconnect timing behind it).

const TEXT = Object.freeze({
  lost: 'Connection lost.',
  queued: 'Messages you send now are delivered when it is back.',
  retryIn: (seconds) => `Trying again in ${seconds} s`,
  retrying: 'Trying again…',
  noNetwork: 'Waiting for the network…',
  retry: 'Retry now',
});

// ---------------------------------------------------------------- grouping

// A message continues the one above it (no avatar, no name; its time at the side on hover or
// focus) when the same person wrote both within this long, with nothing between them: a day
// separator, the "New messages" line or the history marker each start a new group.
const GROUP_WITHIN = 5 * 60 * 1000;

const writtenAt = (node) => Date.parse(node.querySelector('.time')?.dateTime ?? '');

function continues(previous, node) {
  if (!previous || previous.dataset.author !== node.dataset.author) return false;
  // A deleted message says so under its author's name, so it neither joins nor holds a group.
  if (previous.classList.contains('deleted') || node.classList.contains('deleted')) return false;
  const gap = writtenAt(node) - writtenAt(previous);
  return gap >= 0 && gap <= GROUP_WITHIN;
}

// Marks each message of `list` that continues the one above it with the class `grouped`.
export function groupMessages(list) {
  let previous = null;
  for (const child of list.children) {
    const message = child.classList.contains('message') ? child : null;
    if (message) message.classList.toggle('grouped', continues(previous, message));
    previous = message;
  }
}

// ---------------------------------------------------------------- the keyboard inside a message

// The message's links and buttons that can take the focus now, in order (its editor keeps Tab).
function messageControls(node) {
  return [...node.querySelectorAll('a[href], button')].filter(
    (control) => !control.closest('.editor') && !control.disabled && control.getClientRects().length > 0,
  );
}

// Left and right arrows go through a message's controls; from the message itself, right enters
// them; Escape goes back to the message. Returns true when it handled the key.
export function moveWithinMessage(event, node) {
  const controls = messageControls(node);
  const at = controls.indexOf(event.target);
  let next = null;
  if (event.key === 'ArrowRight') next = event.target === node ? controls[0] : controls[at + 1];
  else if (event.key === 'ArrowLeft') next = at > 0 ? controls[at - 1] : (at === 0 ? node : null);
  else if (event.key === 'Escape' && at >= 0) next = node;
  else return false;
  event.preventDefault();
  if (event.key === 'Escape') event.stopPropagation(); // the thread panel closes on Escape otherwise
  next?.focus({ preventScroll: true });
  return true;
}

// The newest message of `me`'s in `list` that can still be edited.
export function lastOwnMessage(list, me) {
  const own = [...list.querySelectorAll('.message.own[data-id]:not(.outbox):not(.deleted):not(.deleting)')];
  return own.reverse().find((node) => node.dataset.author === me) || null;
}

// ---------------------------------------------------------------- reconnecting

// Quick while an outage is young (a restart or a deploy is over in seconds), slower once it has
// lasted a minute; each delay drawn from the upper half of its ceiling, so the clients of a worker
// that restarted do not all come back in the same instant. The `online` event, the tab becoming
// visible and "Retry now" try at once whatever the delay.
const RETRY_BASE = 250, RETRY_CAP_YOUNG = 1000, RETRY_CAP_OLD = 5000, OUTAGE_YOUNG = 60000;

export function reconnectDelay(attempt, downFor) {
  const cap = downFor < OUTAGE_YOUNG ? RETRY_CAP_YOUNG : RETRY_CAP_OLD;
  const ceiling = Math.min(cap, RETRY_BASE * 2 ** Math.min(attempt, 10));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

// ---------------------------------------------------------------- the outage banner

// How long the connection may be away before the banner says so: a worker restart that is over
// by then passes without a word.
export const OUTAGE_NOTICE = 1500;

let banner = null;

function outageBanner(wrap, onRetry) {
  if (banner) return banner;
  banner = document.createElement('div');
  banner.className = 'outage-banner';
  banner.id = 'outage-banner';
  banner.hidden = true;
  const text = document.createElement('p');
  text.className = 'outage-text';
  text.setAttribute('role', 'alert');
  const countdown = document.createElement('span');
  countdown.className = 'outage-countdown';
  const retry = document.createElement('button');
  retry.type = 'button';
  retry.className = 'btn btn-small outage-retry';
  retry.textContent = TEXT.retry;
  retry.addEventListener('click', onRetry);
  banner.append(text, countdown, retry);
  wrap.prepend(banner);
  return banner;
}

// `due`: when the next attempt starts (null while one is under way).
export function showOutage(wrap, due, onRetry) {
  const node = outageBanner(wrap, onRetry);
  const text = node.querySelector('.outage-text');
  if (node.hidden) {
    node.hidden = false;
    // Filled after showing, so that screen readers announce it.
    const lost = document.createElement('strong');
    lost.textContent = TEXT.lost;
    text.replaceChildren(lost, ` ${TEXT.queued}`);
  }
  let state = TEXT.retrying;
  if (!navigator.onLine) state = TEXT.noNetwork;
  else if (due !== null && due - Date.now() >= 1000) state = TEXT.retryIn(Math.ceil((due - Date.now()) / 1000));
  node.querySelector('.outage-countdown').textContent = state;
}

export function hideOutage() {
  if (!banner || banner.hidden) return;
  if (banner.contains(document.activeElement)) document.getElementById('composer-input')?.focus({ preventScroll: true });
  banner.hidden = true;
  banner.querySelector('.outage-text').replaceChildren();
}
