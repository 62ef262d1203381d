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

  // The language switcher applies on change; its button stays for browsers without scripts.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.id === "lang-select" && target.form) {
      target.form.submit();
    }
  });
})();
