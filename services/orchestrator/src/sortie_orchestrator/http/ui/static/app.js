// The status page's only script: sign-in from a token in the URL fragment (which browsers
// never send to the server), and live updates of a request through server-sent events.
(function () {
  "use strict";
  var form = document.getElementById("login");
  if (form && location.hash.length > 1) {
    var token = new URLSearchParams(location.hash.slice(1)).get("token");
    history.replaceState(null, "", location.pathname + location.search);
    if (token) {
      fetch("/ui/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token, next: form.dataset.next }),
      }).then(function (resp) {
        if (resp.ok) {
          location.replace(form.dataset.next || "/ui/");
        } else {
          document.getElementById("login-error").textContent = form.dataset.refused;
        }
      });
    }
  }
  var live = document.getElementById("live");
  if (live && live.dataset.events && window.EventSource) {
    var source = new EventSource(live.dataset.events);
    source.addEventListener("update", function (event) {
      live.innerHTML = event.data;
    });
    source.addEventListener("end", function () {
      source.close();
    });
  }
})();
