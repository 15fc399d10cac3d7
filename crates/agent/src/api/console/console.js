// halo console: keeps the page live. On every cluster event (server-sent, /console/stream)
// and every five seconds, it fetches this page again and swaps in the sections marked
// data-live, leaving forms and the scroll position alone. Everything works without it;
// it only saves reloading.
"use strict";
(function () {
  const indicator = document.getElementById("live");
  const say = (text) => { if (indicator) indicator.textContent = "live updates: " + text; };
  if (!document.querySelector("[data-live]")) { say("off on this page"); return; }
  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", redirect: "manual" });
      if (response.type === "opaqueredirect" || response.status === 401) {
        location.assign("/console/login");
        return;
      }
      if (!response.ok) { say("the node answered " + response.status); return; }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const section of document.querySelectorAll("[data-live]")) {
        const replacement = fresh.getElementById(section.id);
        if (replacement && replacement.innerHTML !== section.innerHTML) section.innerHTML = replacement.innerHTML;
      }
      say("on (" + new Date().toLocaleTimeString() + ")");
    } catch (e) {
      say("cannot reach the node, retrying");
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  const events = new EventSource("/console/stream");
  events.onopen = () => say("on");
  events.onmessage = refresh;
  events.onerror = () => say("reconnecting");
  setInterval(refresh, 5000);
})();
