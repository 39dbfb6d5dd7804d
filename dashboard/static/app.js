// pgoutbox dashboard: live refresh of the overview, the scope selector, and
// select-all for dead letters. Served from the dashboard itself (the CSP
// allows no inline or outside script); the pages work without it.
(function () {
  "use strict";

  // Live refresh: fetch the live fragment every sample interval and swap it
  // in. The fragment is HTML rendered (and escaped) by the server's
  // templates; scripts inside innerHTML never run.
  var live = document.querySelector("[data-live]");
  if (live) {
    var every = Math.max(1000, parseInt(live.getAttribute("data-interval"), 10) || 5000);
    var busy = false;
    var refresh = function () {
      if (busy || document.hidden) {
        return;
      }
      busy = true;
      fetch(live.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (res) {
          if (!res.ok) {
            throw new Error("HTTP " + res.status);
          }
          return res.text();
        })
        .then(function (html) {
          live.innerHTML = html;
          live.classList.remove("stale");
        })
        .catch(function () {
          live.classList.add("stale");
        })
        .finally(function () {
          busy = false;
        });
    };
    setInterval(refresh, every);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        refresh();
      }
    });
  }

  // The scope selector applies on change; its Go button is for no-script.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
    sel.addEventListener("change", function () {
      sel.form.submit();
    });
  });
  document.querySelectorAll(".js-hide").forEach(function (el) {
    el.hidden = true;
  });

  // Select all the checkboxes of a table's form.
  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      box.form.querySelectorAll("input[type=checkbox][name=id]").forEach(function (c) {
        c.checked = box.checked;
      });
    });
  });
})();
