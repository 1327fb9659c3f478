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
  var last = null;

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
    if (html === last) {
      return;
    }
    var open = openDetails();
    region.innerHTML = html;
    last = html;
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
