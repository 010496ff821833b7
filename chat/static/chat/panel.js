// The online panel where it is an overlay (1000 px and narrower, or beside an open thread): it
// opens under the room's header and stops above the composers, so its own toggle and every Send
// button stay in reach; Escape or a click elsewhere closes it and gives the focus back to the toggle.

const OPEN_CLASS = 'show-presence';

export function wirePresencePanel({ layout, toggle, panel, header, composers }) {
  if (!layout || !toggle || !panel) return;
  const isOpen = () => layout.classList.contains(OPEN_CLASS);
  const isOverlay = () => toggle.offsetParent !== null; // the toggle shows only where the panel overlays

  function place() {
    const box = layout.getBoundingClientRect();
    const top = header ? header.getBoundingClientRect().bottom - box.top : 0;
    // The highest composer showing: the room's, or an open thread's lying over the room.
    const tops = composers.filter((form) => form && form.offsetParent !== null).map((form) => form.getBoundingClientRect().top);
    const bottom = tops.length ? box.bottom - Math.min(...tops) : 0;
    layout.style.setProperty('--panel-top', `${Math.max(0, Math.round(top))}px`);
    layout.style.setProperty('--panel-bottom', `${Math.max(0, Math.round(bottom))}px`);
  }

  function setOpen(open, { restoreFocus = false } = {}) {
    if (open) place();
    layout.classList.toggle(OPEN_CLASS, open);
    toggle.setAttribute('aria-expanded', String(open));
    if (!open && restoreFocus) toggle.focus({ preventScroll: true });
  }

  toggle.addEventListener('click', () => setOpen(!isOpen()));
  // Capture: the panel lies over everything else, so Escape closes it before an open thread.
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.defaultPrevented || !isOpen() || !isOverlay()) return;
    event.preventDefault();
    event.stopPropagation();
    setOpen(false, { restoreFocus: true });
  }, true);
  document.addEventListener('pointerdown', (event) => {
    if (!isOpen() || !isOverlay() || panel.contains(event.target) || toggle.contains(event.target)) return;
    setOpen(false);
    // A click on something that takes the focus keeps it; anywhere else the focus returns to the toggle.
    setTimeout(() => {
      if (document.activeElement === document.body || panel.contains(document.activeElement)) toggle.focus({ preventScroll: true });
    });
  });
  window.addEventListener('resize', () => { if (isOpen()) place(); });
}
