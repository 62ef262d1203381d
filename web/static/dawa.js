// Dawa's page behaviour. Loaded from /static (the CSP allows scripts from this origin only).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  // Every htmx request carries the page's CSRF token as a header, so htmx-driven forms and
  // buttons are checked like ordinary form posts.
  document.addEventListener("htmx:configRequest", function (event) {
    var token = csrfToken();
    if (token) {
      event.detail.headers["X-CSRF-Token"] = token;
    }
  });

  // Charts: a canvas.dawa-chart carries its data in data-chart (written by _charts.html);
  // draw each once, in the page's language and direction.
  function drawCharts(root) {
    if (!window.Chart || !root || !root.querySelectorAll) {
      return;
    }
    var rtl = document.documentElement.dir === "rtl";
    var direction = rtl ? "rtl" : "ltr";
    root.querySelectorAll("canvas.dawa-chart").forEach(function (canvas) {
      if (window.Chart.getChart(canvas)) {
        return;
      }
      var spec = JSON.parse(canvas.getAttribute("data-chart"));
      var round = spec.type === "pie" || spec.type === "doughnut";
      var options = {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        locale: document.documentElement.lang || "en",
        plugins: {
          legend: { rtl: rtl, textDirection: direction },
          tooltip: { rtl: rtl, textDirection: direction }
        }
      };
      if (!round) {
        options.scales = {
          x: { stacked: !!spec.stacked },
          y: { stacked: !!spec.stacked, beginAtZero: true }
        };
      }
      new window.Chart(canvas, {
        type: spec.type,
        data: { labels: spec.labels, datasets: spec.datasets },
        options: options
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawCharts(event.target);
  });

  // A barcode scanner types a pack's code and Enter into the Scan field. That Enter would submit
  // the form half filled: instead it raises `scanned`, on which htmx asks the server to fill the
  // form from the scan (hx-trigger="scanned"). Without scripts the Enter submits, and the server
  // fills the form the same way.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key !== "Enter" || !window.htmx || !target || !target.hasAttribute ||
        !target.hasAttribute("data-scan") || !target.value.trim()) {
      return;
    }
    event.preventDefault();
    window.htmx.trigger(target, "scanned");
  });

  // The language switcher applies on change; its button stays for browsers without scripts.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.id === "lang-select" && target.form) {
      target.form.submit();
    }
  });
})();
