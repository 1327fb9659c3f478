// jobworker dashboard: refresh the page's live region from the server, without a reload.
// The server renders (and escapes) every region; this script only swaps them in.
"use strict";
(function () {
  var region = document.getElementById("live");
  var source = region && region.getAttribute("data-src");
  if (!source) {
    return;
  }
  var interval = Number(document.body.getAttribute("data-refresh")) || 2000;
  var updates = 0;
  // Parsed, never attached: its scripts do not run and its images do not load.
  var parsed = document.createElement("template");

  function openDetails() {
    var open = {};
    region.querySelectorAll("details[data-key]").forEach(function (item) {
      if (item.open) {
        open[item.getAttribute("data-key")] = true;
      }
    });
    return open;
  }

  function swap(html) {
    // Compared as the browser serializes both: an unchanged region is left
    // alone, so a button is never replaced under the pointer for nothing.
    parsed.innerHTML = html;
    if (parsed.innerHTML === region.innerHTML) {
      return;
    }
    var open = openDetails();
    region.innerHTML = html;
    region.querySelectorAll("details[data-key]").forEach(function (item) {
      item.open = Boolean(open[item.getAttribute("data-key")]);
    });
  }

  function refresh() {
    fetch(source, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        swap(html);
        document.body.classList.remove("stale");
        // How many live updates this page has had: for tests and the curious.
        updates += 1;
        region.setAttribute("data-updates", String(updates));
      })
      .catch(function () {
        // The server is away or refused: say so, keep the last view, try again.
        document.body.classList.add("stale");
      })
      .then(function () {
        window.setTimeout(refresh, interval);
      });
  }

  window.setTimeout(refresh, interval);
})();
